"""The structural places of a recorded exchange: where a server hands a value out, where a client sends one.

A value counts as carried over only where it stands whole in a structure both ends agree
on: a JSON value, a path segment, a query or form value, a header value (after its scheme),
a hidden input, a meta tag, a cookie. Searching raw text instead finds ``1`` in every
page, which is why the detector once refused short values altogether. Everything here is
parsing only: the detector decides what the places mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from html.parser import HTMLParser
from typing import Literal, NamedTuple
from urllib.parse import unquote, unquote_plus, urlsplit

import orjson

from traffic_replay.correlation.model import ENCODERS, Encoding, ExtractKind
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
DISTINCT = 8192
"""Distinct paths, header pairs, path segments and values a cache of the detector keeps: enough for
what a recording repeats (its endpoints, its users' headers), while a long session's unique ids and
request ids, which never repeat, pass through (at 65,536 the caches held ~100 MiB of them)."""


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


def offer_context(path: str, kind: ExtractKind, source_key: str, key: str, located: bool) -> frozenset[str]:
    """What an offer is about: the resource of the request it answered (``path``), the JSON keys
    above it and its key's stem; for a Location part, the segment before it (``key``).

    Only short values ask, so it is worked out on demand, not for every leaf of every answer.
    """
    about = _resource(path)
    if kind == "json":
        return _json_context(about, source_key)
    if located and key and not any(c.isdigit() for c in key):
        return about | {singular(key)}
    return about


class Field(NamedTuple):
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


def json_leaves(node: object, path: str = "") -> list[tuple[str, str]]:
    """(dotted path, value) of every string and integer of a JSON document, in document order."""
    found: list[tuple[str, str]] = []
    _leaves(node, path, found.append)
    return found


def _leaves(node: object, path: str, add: Callable[[tuple[str, str]], None]) -> None:
    # A list, not nested generators, and the scalars of an object or array added where they
    # stand, not by a call each: most of an API's answer is objects of scalars.
    if isinstance(node, dict | list):
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            at = f"{path}.{key}" if path else str(key)
            kind = type(child)
            if kind is str:
                add((at, child))
            elif kind is int:
                add((at, str(child)))
            elif kind is dict or kind is list:
                _leaves(child, at, add)
    elif type(node) is str:
        add((path, node))
    elif type(node) is int:
        add((path, str(node)))


@lru_cache(maxsize=4096)
def leaf_key(path: str) -> str:
    """The last name in a JSON path that is not a list index."""
    return next((k for k in reversed(path.split(".")) if not k.isdigit()), "")


@lru_cache(maxsize=4096)
def _json_context(about: frozenset[str], path: str) -> frozenset[str]:
    names = {singular(k) for k in path.split(".")[:-1] if not k.isdigit()}
    return about | names | ({s} if (s := stem(leaf_key(path))) else set())


@lru_cache(maxsize=4096)
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


# What an answer offers, before it is known which step gave it: (value, kind, source key,
# key, prefix, suffix, located). Recordings repeat their answers and headers a great deal.
Offered = tuple[str, ExtractKind, str, str, str, str, bool]
"""(value, kind, source key, key, prefix, suffix, located)"""
CACHED_BODY = 4096  # longer answers are rarely repeated, and would crowd the cache


BodyPlace = str | tuple[ExtractKind, str]
"""Where an answer's body has a value: a JSON path, or (``html_input`` or ``html_meta``, its name)."""
Grouped = dict[str, list[BodyPlace]]
"""An answer's body by value, each value's places in document order: a detector that looks only for
some values takes those with one set intersection, and makes offers of those alone (most of what
an answer says is never sent back)."""


def body_offers(request: Request) -> Grouped:
    """The values the body of the response to ``request`` hands out, and where (``offered`` makes
    the offers of one value)."""
    response = request.response
    body = response.body if response is not None else None
    if body is None or body.encoding != "text" or body.truncated:
        return _NO_OFFERS
    ctype = body.content_type or ""
    grouped = _body_offers if len(body.data) <= CACHED_BODY else _body_offers.__wrapped__
    return grouped(ctype, body.data)


def offered(value: str, place: BodyPlace) -> Offered:
    """The offer of ``value`` at one place of a body."""
    if isinstance(place, str):
        return value, "json", place, leaf_key(place), "", "", False
    kind, name = place
    return value, kind, name, name, "", "", False


_NO_OFFERS: Grouped = {}


@lru_cache(maxsize=4096)
def _body_offers(content_type: str, data: str) -> Grouped:
    ctype = content_type.lower()
    groups: Grouped = {}
    if "json" in ctype:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return _NO_OFFERS
        for path, value in json_leaves(document):
            places = groups.get(value)
            if places is None:
                groups[value] = [path]
            else:
                places.append(path)  # (a JSON path is there once: no two offers are the same)
    elif "html" in ctype:
        parser = _FormValues()
        parser.feed(data)
        for kind, name, value in parser.found:
            places = groups.setdefault(value, [])
            if (kind, name) not in places:  # two equal hidden inputs are one offer
                places.append((kind, name))
    return groups


@lru_cache(maxsize=DISTINCT)
def header_offers(name: str, value: str) -> tuple[Offered, ...]:
    """What one response header hands out: a cookie, the parts of a Location, a header value."""
    lower = name.lower()
    if lower == "set-cookie":
        cookie, cookie_value = set_cookie_pair(value)
        return ((cookie_value, "cookie", cookie, cookie, "", "", False),)
    if lower == "location":
        return tuple(_location_offers(name, value))
    if lower not in _IGNORED_RESPONSE_HEADERS:
        return ((value.strip(), "header", name, name, "", "", False),)
    return ()


def _location_offers(name: str, value: str) -> Iterator[Offered]:
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
        yield part, "header", name, previous, value[:m.start()], value[m.end():], True
        previous = part


def _encoding(raw: str, decoded: str) -> Encoding | None:
    if raw is decoded:
        return "raw"  # nothing was escaped (unquote gives back its argument then)
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


@lru_cache(maxsize=DISTINCT)
def _segment(segment: str) -> tuple[str, Encoding | None]:
    # The same segments ("api", "items") start most paths of a recording.
    decoded = unquote(segment)
    return decoded, _encoding(segment, decoded)


@lru_cache(maxsize=DISTINCT)
def header_fields(name: str, value: str) -> tuple[Field, ...]:
    """The fields of one request header: a recording repeats most of its header pairs on every request."""
    if name.lower() in SKIPPED_REQUEST_HEADERS or name.startswith(":"):
        return ()
    whole = Field("header", name, name, value.strip(), 0, len(value), "raw")
    if m := SCHEMED.match(value):
        return whole, Field("header", name, name, m.group(2), m.start(2), m.end(2), "raw")
    return (whole,)


def path_fields(target: str) -> Iterator[Field]:
    """The segments and query values of a request target."""
    path, sep, query = target.partition("?")
    at, previous = 0, ""
    for segment in path.split("/"):
        if segment:
            decoded, encoding = _segment(segment)
            yield Field("path", "", previous, decoded, at, at + len(segment), encoding, keyed=False)
            previous = decoded
        at += len(segment) + 1
    if sep:
        yield from _pairs(query, len(path) + 1, "path")


def body_fields(content_type: str, data: str) -> Iterator[Field]:
    """The values of a text request body: JSON leaves, form values, or the whole text."""
    ctype = content_type.lower()
    if "json" in ctype:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        for leaf, value in json_leaves(document):
            yield Field("body", "", leaf_key(leaf), value, -1, -1, "raw", leaf)
    elif "x-www-form-urlencoded" in ctype:
        yield from _pairs(data, 0, "body")
    else:
        yield Field("body", "", "", data, 0, len(data), "raw", keyed=False)


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


def forget() -> None:
    """Let go of what was worked out once per distinct header, path and body of a recording."""
    for cached in (_body_offers, header_offers, header_fields, _resource, _json_context):
        cached.cache_clear()
