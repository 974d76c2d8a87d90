"""The structural places of a recorded exchange: where a server hands a value out, where a client sends one.

A value counts as carried over only where it stands whole in a structure both ends agree
on: a JSON value, a path segment, a query or form value, a header value (after its scheme),
a hidden input, a meta tag, a cookie. Searching raw text instead finds ``1`` in every
page, which is why the detector once refused short values altogether. Everything here is
parsing only: the detector decides what the places mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import unquote, unquote_plus, urlsplit

import orjson

from traffic_replay.correlation.model import ENCODERS, Encoding, ExtractKind, Source
from traffic_replay.format import Request

# Headers whose values are about the transport or the client, never a value to carry over.
_IGNORED_RESPONSE_HEADERS = frozenset({
    "date", "content-length", "content-type", "server", "connection", "keep-alive", "transfer-encoding", "vary",
    "cache-control", "expires", "last-modified", "content-encoding", "accept-ranges", "age", "pragma", "via",
    "x-powered-by", "strict-transport-security", "content-security-policy", "x-content-type-options",
    "x-frame-options", "referrer-policy", "set-cookie", "alt-svc", "content-language", "access-control-allow-origin",
    "access-control-allow-headers", "access-control-allow-methods", "access-control-allow-credentials",
})
SKIPPED_REQUEST_HEADERS = frozenset({
    "host", "content-length", "cookie", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "upgrade", "user-agent", "accept", "accept-encoding", "accept-language",
})
_LOCATION_PARTS = re.compile(r"[^/?&=#;]+")
SCHEMED = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*) +(\S+)$")  # "Bearer abc", "Token abc"
# What ends a delimited part: a value of 4+ characters may stand inside a longer one
# ("done/untitled.txt"), but only between these, never inside a word ("untitled.txt.bak").
_DELIMITERS = re.compile(r"[/\s,;|:=&?#\"'()\[\]{}<>@+\\]+")
_PATH_SEPARATORS = re.compile(r"[/\\]+")
_WORD = re.compile(r"[a-z0-9]+")
MIN_PART = 4


def set_cookie_pair(header: str) -> tuple[str, str]:
    """``name=value; Path=/`` → (name, value): the one reading of a Set-Cookie value."""
    name, _, rest = header.partition("=")
    return name.strip(), rest.split(";", 1)[0].strip()


@lru_cache(maxsize=4096)
def singular(word: str) -> str:
    word = word.lower()
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def stem(key: str) -> str:
    """The thing a key names: ``item_id``, ``itemId`` and ``item-id`` → ``item``; ``id`` → ``""``."""
    for suffix in ("_id", "-id", "Id", "ID", "_pk", "_uuid", "_key", "_code", "_name", "_path"):
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    else:
        if key.lower() in ("id", "pk", "uuid", "guid"):
            return ""
    return singular(key) if _WORD.fullmatch(key.lower()) else ""


@dataclass(frozen=True, slots=True)
class Offer:
    """A value a response hands out, with what is known about it."""

    value: str
    source: Source
    key: str  # the name it stands under: JSON key, cookie, input, meta or header name, Location segment before it
    about: frozenset[str]  # what the request was about: its path's resource (a Location: the segment before)
    located: bool = False  # a part of a Location: the server chose it as where to go next

    @property
    def context(self) -> frozenset[str]:
        """The things it is about: the request's resource, the JSON keys above it, its key's stem.

        Only short values ask, so it is worked out on demand, not for every leaf of every answer.
        """
        if self.source.kind != "json":
            return self.about
        return _json_context(self.about, self.source.key)


@dataclass(frozen=True, slots=True)
class Field:
    """One structural place of a request: a path segment, a query/form/JSON value, a header value."""

    place: Literal["path", "header", "body"]
    name: str  # header name
    key: str  # what it stands under: the path segment before it, the query/form/JSON key, the header name
    value: str  # decoded
    start: int  # where its raw text is in the place's text (path, header value or body); -1 for JSON
    end: int
    encoding: Encoding | None  # how ``value`` is written there; None: some way no encoder reproduces
    json_path: str | None = None  # a JSON body leaf
    keyed: bool = True  # stands under a name of its own (query, form, JSON, header), not after a path segment


def json_leaves(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield from json_leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from json_leaves(child, f"{path}.{index}" if path else str(index))
    elif isinstance(node, str) or (isinstance(node, int) and not isinstance(node, bool)):
        yield path, str(node)


@lru_cache(maxsize=4096)
def leaf_key(path: str) -> str:
    """The last name in a JSON path that is not a list index."""
    return next((k for k in reversed(path.split(".")) if not k.isdigit()), "")


@lru_cache(maxsize=4096)
def _json_context(about: frozenset[str], path: str) -> frozenset[str]:
    names = {singular(k) for k in path.split(".")[:-1] if not k.isdigit()}
    return about | names | ({s} if (s := stem(leaf_key(path))) else set())


def _resource(path: str) -> frozenset[str]:
    """What a request path is about: its last segment that names something (``/api/items/`` → item)."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    for segment in reversed(segments):
        if _WORD.fullmatch(segment.lower()) and not any(c.isdigit() for c in segment) and len(segment) > 1:
            return frozenset({singular(segment)})
    return frozenset()


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


def offers(request: Request, step: int) -> Iterator[Offer]:
    """Every value the response of ``request`` hands out at a structural place, body first."""
    response = request.response
    if response is None:
        return
    about = _resource(request.path)
    body = response.body
    # Body values first: a JSON path outlives the wording of a header.
    if body is not None and body.encoding == "text" and not body.truncated:
        ctype = (body.content_type or "").lower()
        if "json" in ctype:
            try:
                document = orjson.loads(body.data)
            except orjson.JSONDecodeError:
                document = None
            for path, value in json_leaves(document):
                yield Offer(value, Source(step, "json", path), leaf_key(path), about)
        elif "html" in ctype:
            parser = _FormValues()
            parser.feed(body.data)
            for kind, name, value in parser.found:
                yield Offer(value, Source(step, kind, name), name, about)
    for name, value in response.headers:
        lower = name.lower()
        if lower == "set-cookie":
            cookie, cookie_value = set_cookie_pair(value)
            yield Offer(cookie_value, Source(step, "cookie", cookie), cookie, about)
        elif lower == "location":
            yield from _location_offers(name, value, step, about)
        elif lower not in _IGNORED_RESPONSE_HEADERS:
            yield Offer(value.strip(), Source(step, "header", name), name, about)


def _location_offers(name: str, value: str, step: int, about: frozenset[str]) -> Iterator[Offer]:
    # Ids hide in the path and query of a redirect target: each segment and query value is one.
    split = urlsplit(value)
    begin = len(f"{split.scheme}://{split.netloc}") if split.netloc else 0
    query_at = value.find("?", begin)
    previous = ""
    for m in _LOCATION_PARTS.finditer(value, begin):
        part = m.group()
        if 0 <= query_at < m.start() and value[m.start() - 1] != "=":
            previous = part  # a query key: it names the value that follows
            continue
        context = about | ({singular(previous)} if previous and not any(c.isdigit() for c in previous) else set())
        yield Offer(part, Source(step, "header", name, value[:m.start()], value[m.end():]), previous,
                    context, located=True)
        previous = part


def _encoding(raw: str, decoded: str) -> Encoding | None:
    for encoding, encode in ENCODERS.items():
        if encode(decoded) == raw:
            return encoding
    return None


def _pairs(text: str, offset: int, place: Literal["path", "body"]) -> Iterator[Field]:
    """``a=1&b=2`` as fields; keys and values decoded as forms are."""
    at = offset
    for pair in text.split("&"):
        key, sep, value = pair.partition("=")
        if sep:
            start = at + len(key) + 1
            decoded = unquote_plus(value)
            yield Field(place, "", unquote_plus(key), decoded, start, start + len(value), _encoding(value, decoded))
        at += len(pair) + 1


def fields(request: Request) -> Iterator[Field]:
    """Every structural place of ``request`` with the value it holds there."""
    path, sep, query = request.path.partition("?")
    at, previous = 0, ""
    for segment in path.split("/"):
        if segment:
            decoded = unquote(segment)
            yield Field("path", "", previous, decoded, at, at + len(segment), _encoding(segment, decoded),
                        keyed=False)
            previous = decoded
        at += len(segment) + 1
    if sep:
        yield from _pairs(query, len(path) + 1, "path")
    for name, value in request.headers:
        if name.lower() in SKIPPED_REQUEST_HEADERS or name.startswith(":"):
            continue
        yield Field("header", name, name, value.strip(), 0, len(value), "raw")
        if m := SCHEMED.match(value):
            yield Field("header", name, name, m.group(2), m.start(2), m.end(2), "raw")
    body = request.body
    if body is None or body.encoding != "text":
        return
    ctype = (body.content_type or "").lower()
    if "json" in ctype:
        try:
            document = orjson.loads(body.data)
        except orjson.JSONDecodeError:
            return
        for leaf, value in json_leaves(document):
            yield Field("body", "", leaf_key(leaf), value, -1, -1, "raw", leaf)
    elif "x-www-form-urlencoded" in ctype:
        yield from _pairs(body.data, 0, "body")
    else:
        yield Field("body", "", "", body.data, 0, len(body.data), "raw", keyed=False)


def parts(value: str) -> Iterator[tuple[int, int]]:
    """Spans of the delimited parts of ``value`` long enough to stand for a value of their own.

    Path components first, so that a name with a space ("Untitled Folder") stays one part of
    "done/Untitled Folder"; then every delimiter.
    """
    if len(value) <= MIN_PART or _DELIMITERS.search(value) is None:
        return  # the common case, a plain segment or id: one search, no parts
    seen: set[tuple[int, int]] = {(0, len(value))}
    for delimiters in (_PATH_SEPARATORS, _DELIMITERS):
        at = 0
        for m in delimiters.finditer(value):
            if m.start() - at >= MIN_PART and (at, m.start()) not in seen:
                seen.add((at, m.start()))
                yield at, m.start()
            at = m.end()
        if len(value) - at >= MIN_PART and (at, len(value)) not in seen:
            seen.add((at, len(value)))
            yield at, len(value)
