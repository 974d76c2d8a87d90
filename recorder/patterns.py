"""Secrets by their look, wherever they are: JWTs, well-known API keys, passwords in URLs.

Named headers and fields (``recorder.redaction``) catch the secrets a client sends where
secrets go; these catch the ones that travel elsewhere: a JWT in an HTML page or a URL
path, an API key in a multipart part or a JavaScript bundle, ``user:password@`` in a link
or a ``Location``. Each shape is specific enough to be near-free of false positives (a
fixed prefix, a length, a character set, boundaries; a JWT's header must decode to a JSON
object with an ``alg``), and each match becomes the same keyed placeholder as a named
secret of the same value, so a token handed out in a page and sent back in a header still
pairs up.

Cost: each shape is one search for a literal (``eyJ``, ``AKIA``...) over the text; the
regular expression behind it runs only where the literal is. Bodies are searched as
Latin-1 views of their bytes: no decoding, no failure, and the bytes around a match kept
exactly as they were.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote, unquote

import orjson

__all__ = ["SHAPES", "PatternRedactor"]


def _jwt(token: str) -> bool:
    """A JWS: its header is a JSON object naming its algorithm (RFC 7515 requires ``alg``)."""
    header = token.partition(".")[0]
    try:
        document = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(document, dict) and isinstance(document.get("alg"), str)


class Shape(NamedTuple):
    name: str
    literals: tuple[str, ...]
    """Searched first, the expression only where one is; none when the expression starts with a literal
    (that search is as fast)."""
    pattern: str
    before: str
    """Characters that must not come just before a match (it would be inside a longer word)."""
    check: Callable[[str], bool] | None = None
    group: int = 0
    """The group that is the secret (the password of ``user:password@``)."""
    also: str = ""
    """A character that must be in the text too (``@`` for a URL's password)."""


_WORD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

SHAPES: tuple[Shape, ...] = (
    # ".eyJ" (the payload's start) rather than "eyJ": rarer, and a longer literal is searched faster.
    Shape("JWT", (".eyJ",), r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*", _WORD + "_-.", _jwt),
    Shape("AWS access key id", ("AKIA", "ASIA"), r"A[KS]IA[0-9A-Z]{16}(?![0-9A-Za-z])", _WORD),
    Shape("Stripe secret or restricted key", ("k_live_", "k_test_"), r"[rs]k_(?:live|test)_[0-9A-Za-z]{20,}",
          _WORD + "_"),
    Shape("GitHub token", (), r"gh[opsru]_[A-Za-z0-9]{36,}", _WORD + "_"),
    Shape("GitHub fine-grained token", ("github_pat_",), r"github_pat_[A-Za-z0-9_]{40,}", _WORD + "_"),
    Shape("Slack token", ("xox",), r"xox[abprs]-[0-9A-Za-z-]{10,}", _WORD + "-"),
    # RFC 3986 userinfo: no '/', '?', '#', '@' or space in it; '\/' is how some JSON writes '/'.
    Shape("password in a URL", ("://", ":\\/\\/"),
          r"(?::(?://|\\/\\/))[A-Za-z0-9\-._~%!$&'()*+,;=]+:([A-Za-z0-9\-._~%!$&'()*+,;=:]+)@", "", None, 1, "@"),
)
"""What is redacted by its look (listed in the README's Redaction section)."""


class _Compiled:
    """A shape ready to search texts and bytes."""

    __slots__ = ("also", "also_bytes", "before", "check", "group", "literals", "literals_bytes", "probe_bytes",
                 "regex")

    def __init__(self, shape: Shape) -> None:
        self.literals = shape.literals
        self.literals_bytes = tuple(literal.encode() for literal in shape.literals)
        self.also, self.also_bytes = shape.also, shape.also.encode()
        self.regex = re.compile(shape.pattern)
        self.probe_bytes = re.compile(shape.pattern.encode())
        self.before = frozenset(shape.before)
        self.check = shape.check
        self.group = shape.group

    def in_text(self, text: str) -> bool:
        if self.also and self.also not in text:
            return False
        if not self.literals:
            return self.regex.search(text) is not None
        for literal in self.literals:
            if literal in text:
                return True
        return False

    def in_bytes(self, content: bytes) -> bool:
        # Searched in the bytes themselves: faster than in any text made of them.
        if self.also_bytes and self.also_bytes not in content:
            return False
        if not self.literals_bytes:
            return self.probe_bytes.search(content) is not None
        for literal in self.literals_bytes:
            if literal in content:
                return True
        return False


_SMALL = 4096
"""Bodies up to this size are first searched for every shape's mark at once (in one loop): for larger ones
each shape's own search is the cost, and that first pass would only repeat it."""


class PatternRedactor:
    """Replaces every secret-shaped value of a text by ``placeholder(value)``."""

    def __init__(self, placeholder: Callable[[str], str]) -> None:
        self._placeholder = placeholder
        self._shapes = [_Compiled(shape) for shape in SHAPES]
        # Something that every shape has (its literal, the start of its expression, its "also"): most texts
        # have none of these, and a loop over them is the whole cost of such a text.
        marks = [shape.also or literal for shape in SHAPES for literal in shape.literals or (shape.pattern[:2],)]
        self._marks = tuple(dict.fromkeys(marks))
        self._marks_bytes = tuple(mark.encode() for mark in self._marks)

    def text(self, text: str, quoted: bool = False) -> str:
        """``text`` with every match redacted (``quoted``: percent-encoded, for URLs and forms); ``text``
        itself when nothing matched."""
        for mark in self._marks:
            if mark in text:
                break
        else:
            return text
        out = text
        for shape in self._shapes:
            if shape.in_text(text):
                out = self._sub(shape, out, quoted, False)
        return out

    def content(self, content: bytes, quoted: bool = False) -> bytes:
        """A body's bytes with every match redacted, as UTF-8 placeholders; ``content`` itself when none."""
        if len(content) <= _SMALL:
            for mark in self._marks_bytes:
                if mark in content:
                    break
            else:
                return content
        found = [shape for shape in self._shapes if shape.in_bytes(content)]
        if not found:
            return content
        view = out = content.decode("latin-1")  # one character per byte: nothing can fail, nothing moves
        for shape in found:
            out = self._sub(shape, out, quoted, True)
        return content if out is view else out.encode("latin-1")

    def _sub(self, shape: _Compiled, text: str, quoted: bool, latin: bool) -> str:
        def replace(m: re.Match[str]) -> str:
            start = m.start()
            if start and m.string[start - 1] in shape.before:
                return m.group()
            value = m.group(shape.group)
            if shape.check is not None and not shape.check(value):
                return m.group()
            if shape.group:
                value = unquote(value)  # userinfo is percent-encoded: the placeholder is of the value
            p = self._placeholder(value)
            p = quote(p, safe=":") if quoted else p.encode("utf-8").decode("latin-1") if latin else p
            if not shape.group:
                return p
            return m.string[start:m.start(shape.group)] + p + m.string[m.end(shape.group):m.end()]

        redacted = shape.regex.sub(replace, text)
        return text if redacted == text else redacted
