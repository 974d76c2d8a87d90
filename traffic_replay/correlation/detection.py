"""Find, from a recording alone, the values a server handed out that later requests sent back.

A CSRF token in a hidden input, an id in a JSON answer or a ``Location`` header, a bearer
token: replayed verbatim they make a session fail (403, 404, 401). For each such value the
detector names its *sources* (responses it can be extracted from, and how) and its *uses*
(where later requests carry it). The replayer compiles both once per session file; each
virtual user then extracts live values from its own responses and substitutes them.

A value is correlated when it appears in a response before any request sent it (a value
the client sent first, such as a typed username, is the client's own) and it looks
dynamic: it contains a digit, or it is long. Pure Python: no mitmproxy, no locust.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import unquote_plus

import orjson

from traffic_replay.correlation.model import ENCODERS, Correlation, Encoding, ExtractKind, Source, Use
from traffic_replay.correlation.template import find_token
from traffic_replay.format import Request, Session

# Headers whose values are about the transport or the client, never a value to carry over.
_IGNORED_RESPONSE_HEADERS = frozenset({
    "date", "content-length", "content-type", "server", "connection", "keep-alive", "transfer-encoding", "vary",
    "cache-control", "expires", "last-modified", "content-encoding", "accept-ranges", "age", "pragma", "via",
    "x-powered-by", "strict-transport-security", "content-security-policy", "x-content-type-options",
    "x-frame-options", "referrer-policy", "set-cookie", "alt-svc", "content-language", "access-control-allow-origin",
    "access-control-allow-headers", "access-control-allow-methods", "access-control-allow-credentials",
})
_SKIPPED_REQUEST_HEADERS = frozenset({
    "host", "content-length", "cookie", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "upgrade", "user-agent", "accept", "accept-encoding", "accept-language",
})
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-]")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-]+")
_LOCATION_PARTS = re.compile(r"[^/?&=#;]+")
MIN_LENGTH = 4
LONG = 16


def looks_dynamic(value: str) -> bool:
    """Ids and tokens carry a digit or are long; short words ("books", "admin") are data."""
    if len(value) >= LONG:
        return True
    return len(value) >= 2 and any(c.isdigit() for c in value) and (len(value) >= MIN_LENGTH or value.isdigit())


def json_leaves(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield from json_leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from json_leaves(child, f"{path}.{index}" if path else str(index))
    elif isinstance(node, str) or (isinstance(node, int) and not isinstance(node, bool)):
        yield path, str(node)


class _FormValues(HTMLParser):
    """Hidden inputs and meta tags of an HTML page: where CSRF tokens live."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[ExtractKind, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type", "").lower() == "hidden" and a.get("name") and "value" in a:
            self.found.append(("html_input", a["name"], a["value"]))
        elif tag == "meta" and a.get("name") and a.get("content"):
            self.found.append(("html_meta", a["name"], a["content"]))


def response_values(request: Request, step: int) -> Iterator[tuple[str, Source]]:
    """Every (value, source) a response offers, best extractor first for each value."""
    response = request.response
    if response is None:
        return
    # Body values first: a JSON path outlives the wording of a header.
    body = response.body
    if body is not None and body.encoding == "text" and not body.truncated:
        yield from _body_values(body.content_type, body.data, step)
    for name, value in response.headers:
        lower = name.lower()
        if lower == "set-cookie":
            cookie_name, _, rest = value.partition("=")
            yield rest.split(";", 1)[0].strip(), Source(step, "cookie", cookie_name.strip())
        elif lower == "location":
            # Ids hide in the path and query of a redirect target: each part is a value.
            for m in _LOCATION_PARTS.finditer(value):
                yield m.group(), Source(step, "header", name, value[:m.start()], value[m.end():])
        elif lower not in _IGNORED_RESPONSE_HEADERS:
            yield value.strip(), Source(step, "header", name)


def _body_values(content_type: str | None, data: str, step: int) -> Iterator[tuple[str, Source]]:
    ctype = (content_type or "").lower()
    if "json" in ctype:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        for path, value in json_leaves(document):
            yield value, Source(step, "json", path)
    elif "html" in ctype:
        parser = _FormValues()
        parser.feed(data)
        for kind, name, value in parser.found:
            yield value, Source(step, kind, name)


def request_texts(request: Request) -> Iterator[tuple[Literal["path", "header", "body"], str, str]]:
    yield "path", "", request.path
    for name, value in request.headers:
        if name.lower() not in _SKIPPED_REQUEST_HEADERS:
            yield "header", name, value
    if request.body is not None and request.body.encoding == "text":
        yield "body", "", request.body.data


@lru_cache(maxsize=65536)
def _encodings(value: str) -> tuple[tuple[Encoding, str], ...]:
    forms: list[tuple[Encoding, str]] = [("raw", value)]
    # Clients differ in what they leave unescaped; ':' and '/' are legal in queries and forms.
    for encoding in ("quote_plus", "quote", "quote_lenient"):
        encoded = ENCODERS[encoding](value)
        if all(encoded != seen for _, seen in forms):
            forms.append((encoding, encoded))
    return tuple(forms)


def uses_in(request: Request, step: int, value: str) -> list[Use]:
    uses: list[Use] = []
    for place, name, text in request_texts(request):
        for encoding, form in _encodings(value):
            if find_token(text, form) >= 0:
                uses.append(Use(step, place, name, encoding))
                break
    return uses


class _Sent:
    """What one request sent, indexed once: its tokens, and all its texts in one string."""

    __slots__ = ("request", "tokens", "haystack")

    def __init__(self, request: Request) -> None:
        texts = [text for _, _, text in request_texts(request)]
        self.request = request
        self.tokens = {t for text in texts for t in _TOKEN_RUN.findall(text)}
        self.haystack = "\x00".join(texts)

    def sends(self, value: str) -> bool:
        if _TOKEN_RUN.fullmatch(value):
            return value in self.tokens  # the common case: one set lookup, no scan
        # Encoding leaves a value's leading run of token characters as it is: if the request
        # has no such token, no form of the value is in it.
        first = _TOKEN_RUN.match(value)
        if first is not None and first.group() not in self.tokens:
            return False
        # Then a plain substring test: the exact, token-bounded search only where it can succeed.
        return any(form in self.haystack and find_token(self.haystack, form) >= 0 for _, form in _encodings(value))


def _sent_before(value: str, tokens: set[str], texts: list[str]) -> bool:
    if _TOKEN_RUN.fullmatch(value):
        return value in tokens
    return any(form in text and find_token(text, form) >= 0 for text in texts for _, form in _encodings(value))


def detect(session: Session) -> list[Correlation]:
    """The correlations of one session, in the order their values first appear."""
    candidates: dict[str, Correlation] = {}
    client_values: set[str] = set()  # sent by the client before any response offered them
    sent_tokens: set[str] = set()  # everything sent so far, for "did the client send it first?"
    sent_texts: list[str] = []
    for step, request in enumerate(session.requests):
        current = _Sent(request)
        sent_tokens |= current.tokens
        sent_texts.append(current.haystack)
        for correlation in candidates.values():
            if current.sends(correlation.value):
                correlation.uses.extend(uses_in(request, step, correlation.value))
        offered: dict[str, Source] = {}
        for value, source in response_values(request, step):
            if value and value not in offered and looks_dynamic(value):
                offered[value] = source
        for value, source in offered.items():
            if value in client_values:
                continue
            if value not in candidates and _sent_before(value, sent_tokens, sent_texts):
                client_values.add(value)
                continue
            candidates.setdefault(value, Correlation(value)).sources.append(source)
    return [c for c in candidates.values() if c.uses]


_PLACEHOLDER_LIKE = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r"|(?=[^\s]*\d)(?=[^\s]*[A-Za-z])[A-Za-z0-9_\-.~+/=]{16,})$")  # long mixed token
_REQUEST_TOKENS = re.compile(r"[A-Za-z0-9_\-.~]{16,}")


@dataclass(frozen=True, slots=True)
class Unsourced:
    """A value that looks server-made but no earlier response offered: a likely failure."""

    step: int
    place: str
    value: str


def unsourced_values(session: Session, correlations: list[Correlation]) -> list[Unsourced]:
    known = {c.value for c in correlations}
    seen: set[str] = set()
    found: list[Unsourced] = []
    for step, request in enumerate(session.requests):
        for place, name, text in request_texts(request):
            # Decoded first: "12+Main+Street" in a form is three words, not one token.
            for token in _REQUEST_TOKENS.findall(unquote_plus(text)):
                if token in known or token in seen or not _PLACEHOLDER_LIKE.match(token):
                    continue
                seen.add(token)
                found.append(Unsourced(step, f"{place} {name}".strip(), token))
    return found
