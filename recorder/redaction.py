"""Secrets out of a recording: named headers and fields, and values that look like credentials.

Pure Python, no mitmproxy: the recorder redacts every exchange before it is kept, an
import can do the same. A redacted value becomes ``«redacted:xxxxxxxx»``: the first
8 hex digits of an HMAC-SHA256 of the value, keyed by a random key kept in the user's
config directory, never in the recordings (``recorder.keys``). Equal secrets get equal
placeholders, so a token that a response handed out and a later request sent back still
look the same (which correlation needs), while the value itself is never written.

What is redacted: the values of sensitive headers (whole, or the credentials after the
scheme, or cookie values), of sensitive JSON, form, multipart and query fields (by name),
and, anywhere in URLs, headers and text bodies, whatever has the shape of a credential
(``recorder.patterns``: JWTs, well-known API keys, ``user:password@`` in URLs).

The placeholder is derived from the decoded value: the same token in an
``Authorization: Bearer`` header, a JSON field, an HTML page and a query parameter (where
the placeholder is percent-encoded) gets the same placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_plus

import orjson

from recorder.keys import load_key
from recorder.patterns import PatternRedactor
from traffic_replay.redacted import PLACEHOLDER, placeholder

__all__ = ["PLACEHOLDER", "Redactor", "load_key", "normalize"]

Header = tuple[str, str]

ALWAYS_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie")
"""Headers whose values are always redacted (cookie values only: names and attributes stay)."""

DEFAULT_HEADERS = ("x-api-key", "x-auth-token")
"""Further headers redacted by default, whole value."""

DEFAULT_FIELDS = ("password", "passwd", "secret", "client_secret", "token", "access_token", "refresh_token",
                  "id_token", "auth_token", "api_key", "apikey")
"""JSON fields, form and multipart fields and query parameters redacted by default."""

URL_HEADERS = frozenset({"location", "referer", "content-location"})
"""Headers that hold a URL: a placeholder in them is percent-encoded."""

_BINARY = re.compile(r"image/|audio/|video/|font/|octet-stream|zip|pdf|protobuf|grpc|wasm|msgpack")
"""Content types searched for no credential shapes: not text, and large."""

_PART_NAME = re.compile(rb'(?i)^content-disposition:[^\r\n]*?;\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.M)
_PART_TYPE = re.compile(rb"(?i)^content-type:\s*([^\r\n;]+)", re.M)
_BOUNDARY = re.compile(r'(?i);\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))')


def _binary(ctype: str) -> bool:
    return _BINARY.search(ctype) is not None


def normalize(name: str) -> str:
    """Field names compare without case, dashes or underscores: apiKey, api_key and API-KEY are one."""
    return name.lower().replace("_", "").replace("-", "")


_REMEMBERED = 4096
"""Placeholders a ``Redactor`` remembers (values are secrets of one recording: kept in memory only)."""


class Redactor:
    """Redacts with one key; the names it redacts are fixed at construction."""

    def __init__(self, key: bytes, headers: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
        self._key = key
        self.headers = frozenset(h.strip().lower() for h in (*ALWAYS_HEADERS, *DEFAULT_HEADERS, *headers))
        self.fields = frozenset(normalize(f.strip()) for f in (*DEFAULT_FIELDS, *fields) if f.strip())
        # One search for all the names (longest first, so none hides another): cheaper than one per name.
        names = sorted(self.fields, key=len, reverse=True)
        self._field_text = re.compile("|".join(re.escape(f) for f in names))
        self._field_bytes = re.compile(b"|".join(re.escape(f.encode("utf-8")) for f in names))
        self._placeholders: dict[str, str] = {}
        self.patterns = PatternRedactor(self.placeholder)

    def placeholder(self, value: str) -> str:
        # The format is shared with the replayer, which fills placeholders in (traffic_replay.redacted).
        # Remembered: the same session cookie and token come back on every request, and an HMAC is the
        # dearest step of redacting a flow. Bounded, so a stream of distinct values cannot grow it.
        known = self._placeholders.get(value)
        if known is None:
            if len(self._placeholders) >= _REMEMBERED:
                self._placeholders.clear()
            known = self._placeholders[value] = placeholder(self._key, value)
        return known

    # Headers ------------------------------------------------------------------------

    def header_list(self, headers: list[Header]) -> list[Header]:
        """``headers`` with sensitive values redacted; the same list when none is."""
        out: list[Header] | None = None
        # One search of the other values for credential shapes (they are rare), not one per header.
        named = self.headers
        joined = "\n".join([v for n, v in headers if n.lower() not in named])
        scan = self.patterns.text(joined) is not joined
        for i, (name, value) in enumerate(headers):
            lower = name.lower()
            if lower in self.headers:
                redacted = self.header(lower, value)
            elif lower == "location":
                redacted = self.path(value)
            elif scan:
                redacted = self.patterns.text(value, quoted=lower in URL_HEADERS)
            else:
                continue
            if redacted != value:
                if out is None:
                    out = list(headers)
                out[i] = (name, redacted)
        return headers if out is None else out

    def header(self, name: str, value: str) -> str:
        """One header value, ``name`` in lower case."""
        if not value:
            return value
        if name == "cookie":
            return "; ".join(self._cookie_pair(p.strip()) for p in value.split(";"))
        if name == "set-cookie":
            first, sep, attributes = value.partition(";")
            return self._cookie_pair(first) + sep + attributes
        if name in ("authorization", "proxy-authorization"):
            scheme, sep, credentials = value.partition(" ")
            if sep and credentials.strip():  # keep the scheme: "Bearer «...»" says what kind of secret it was
                return f"{scheme} {self.placeholder(credentials.strip())}"
        return self.placeholder(value)

    def _cookie_pair(self, pair: str) -> str:
        name, sep, value = pair.partition("=")
        value = value.strip()
        if not sep or not value:
            return pair
        quoted = len(value) > 1 and value[0] == value[-1] == '"'
        return f"{name}={self.placeholder(value[1:-1] if quoted else value)}"

    # URLs and form bodies ----------------------------------------------------------------

    def path(self, path: str) -> str:
        """A path or URL with sensitive query parameters and credential-shaped values redacted."""
        head, sep, query = path.partition("?")
        if sep and self._may_hold(query):
            fragment = ""
            if "#" in query:
                query, fragment = query.split("#", 1)
                fragment = "#" + fragment
            path = f"{head}?{self.form(query)}{fragment}"
        return self.patterns.text(path, quoted=True)

    def form(self, query: str) -> str:
        """A form-encoded string (query or ``application/x-www-form-urlencoded`` body), redacted."""
        parts = query.split("&")
        for i, part in enumerate(parts):
            name, sep, value = part.partition("=")
            if sep and value and normalize(unquote_plus(name)) in self.fields:
                parts[i] = f"{name}={quote(self.placeholder(unquote_plus(value)), safe=':')}"
        return "&".join(parts)

    # Bodies ---------------------------------------------------------------------------

    def body(self, content: bytes, content_type: str | None) -> bytes:
        """A body with sensitive fields and credential-shaped values redacted; ``content`` itself when none is."""
        if not content:
            return content
        ctype = content_type.lower() if content_type else ""
        if _binary(ctype):
            return content
        if "multipart/" in ctype and content_type:
            return self._multipart(content, content_type)
        form = "x-www-form-urlencoded" in ctype
        content = self.patterns.content(content, quoted=form)
        if "json" in ctype:
            if not self._may_hold_bytes(content):
                return content
            try:
                document = orjson.loads(content)
            except orjson.JSONDecodeError:
                return content  # not JSON after all: nothing we can find fields in
            return orjson.dumps(document) if self._redact_json(document, False) else content
        if form:
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                return content
            redacted = self.form(text) if self._may_hold(text) else text
            return content if redacted == text else redacted.encode("utf-8")
        return content

    def _multipart(self, content: bytes, content_type: str) -> bytes:
        """A ``multipart/*`` body: sensitive parts by name, whole; text parts searched for credential shapes."""
        m = _BOUNDARY.search(content_type)  # (the boundary's case matters)
        delimiter = b"--" + (m.group(1) or m.group(2)).encode("latin-1") if m else b""
        pieces = content.split(delimiter) if delimiter else [content]
        if len(pieces) < 2:
            return self.patterns.content(content)  # not the multipart it says it is: search it whole
        changed = False
        for i in range(1, len(pieces)):
            piece = pieces[i]
            if piece.startswith(b"--"):
                break  # the closing delimiter: what follows is the epilogue
            end, gap = piece.find(b"\r\n\r\n"), 4
            if end < 0:
                end, gap = piece.find(b"\n\n"), 2
            if end < 0:
                continue
            head, start = piece[:end], end + gap
            stop = len(piece) - (2 if piece.endswith(b"\r\n") else 1 if piece.endswith(b"\n") else 0)
            value = piece[start:stop]
            if not value:
                continue
            named = _PART_NAME.search(head)
            name = (named.group(1) or named.group(2) or b"").decode("utf-8", "replace") if named else ""
            if name and normalize(name) in self.fields:
                redacted = self.placeholder(value.decode("utf-8", "replace")).encode("utf-8")
            else:
                part_type = _PART_TYPE.search(head)
                if part_type and _binary(part_type.group(1).decode("latin-1").lower()):
                    continue  # an uploaded image or archive
                redacted = self.patterns.content(value)
            if redacted != value:
                pieces[i] = piece[:start] + redacted + piece[stop:]
                changed = True
        return delimiter.join(pieces) if changed else content

    def _redact_json(self, node: Any, sensitive: bool) -> bool:
        """Redact ``node`` in place (every scalar under a sensitive key); True if anything changed."""
        changed = False
        if isinstance(node, dict):
            for k, v in node.items():
                hit = sensitive or normalize(k) in self.fields
                if isinstance(v, dict | list):
                    changed = self._redact_json(v, hit) or changed
                elif hit and isinstance(v, str | int | float) and not isinstance(v, bool):
                    node[k] = self.placeholder(str(v))
                    changed = True
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, dict | list):
                    changed = self._redact_json(v, sensitive) or changed
                elif sensitive and isinstance(v, str | int | float) and not isinstance(v, bool):
                    node[i] = self.placeholder(str(v))
                    changed = True
        return changed

    # A cheap test before parsing: most bodies name no sensitive field at all. Squashing
    # case, dashes and underscores first keeps it a superset of what ``normalize`` matches.
    def _may_hold(self, text: str) -> bool:
        if "%" in text:
            text = unquote_plus(text)
        squashed = text.lower().replace("_", "").replace("-", "")
        return self._field_text.search(squashed) is not None

    def _may_hold_bytes(self, content: bytes) -> bool:
        squashed = content.lower().replace(b"_", b"").replace(b"-", b"")
        return self._field_bytes.search(squashed) is not None
