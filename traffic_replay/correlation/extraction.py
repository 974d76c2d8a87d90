"""Read a correlated value out of a response: compiled once per source, run per response.

The same extractors read the recorded responses (to find what a rules-file rule would
have extracted) and the live ones (in the replayer's hot loop), so that what was
detected is exactly what is replayed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import lru_cache

import orjson

from traffic_replay.correlation.model import Source
from traffic_replay.correlation.places import set_cookie_pair
from traffic_replay.format import Request

_MISSING = object()


class ResponseView:
    """What extractors may read from a response; JSON is parsed at most once, on demand."""

    __slots__ = ("_header", "content", "_cookie", "_json")

    def __init__(self, header: Callable[[str], str | None], content: bytes,
                 cookie: Callable[[str], str | None]) -> None:
        self._header = header
        self.content = content
        self._cookie = cookie
        self._json: object = _MISSING

    def header(self, name: str) -> str | None:
        return self._header(name)

    def cookie(self, name: str) -> str | None:
        return self._cookie(name)

    def json(self) -> object:
        if self._json is _MISSING:
            try:
                self._json = orjson.loads(self.content) if self.content else None
            except orjson.JSONDecodeError:
                self._json = None
        return self._json


Extractor = Callable[[ResponseView], str | None]


def _json_extractor(path: str) -> Extractor:
    # ASCII digits only: "²".isdigit() holds, and int() refuses it.
    keys: tuple[str | int, ...] = tuple(int(k) if k.isascii() and k.isdigit() else k
                                        for k in path.split(".")) if path else ()

    def extract(view: ResponseView) -> str | None:
        node = view.json()
        for key in keys:
            if isinstance(node, dict):
                node = node.get(str(key), _MISSING)
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
            else:
                return None
            if node is _MISSING:
                return None
        if isinstance(node, bool) or not isinstance(node, str | int):
            return None
        return str(node)
    return extract


def _attribute_extractor(tag: str, name: str, attribute: str) -> Extractor:
    # Attribute order varies between pages and frameworks: accept both.
    n, a = re.escape(name).encode(), attribute.encode()
    pattern = re.compile(
        rb"<" + tag.encode() + rb"\b[^>]*?\bname=[\"']" + n + rb"[\"'][^>]*?\b" + a + rb"=[\"']([^\"']*)[\"']"
        rb"|<" + tag.encode() + rb"\b[^>]*?\b" + a + rb"=[\"']([^\"']*)[\"'][^>]*?\bname=[\"']" + n + rb"[\"']",
        re.IGNORECASE)

    def extract(view: ResponseView) -> str | None:
        m = pattern.search(view.content)
        if m is None:
            return None
        return html.unescape((m.group(1) if m.group(1) is not None else m.group(2)).decode("utf-8", "replace"))
    return extract


def _header_extractor(name: str, prefix: str, suffix: str) -> Extractor:
    if not prefix and not suffix:
        def whole(view: ResponseView) -> str | None:
            value = view.header(name)
            return value.strip() if value else None
        return whole
    # A part of a header (an id in a Location): the same text around it, any value in between.
    pattern = re.compile(re.escape(prefix) + r"([^/?&=#;]+)" + re.escape(suffix) + "$")

    def part(view: ResponseView) -> str | None:
        value = view.header(name)
        m = pattern.search(value) if value else None
        return m.group(1) if m else None
    return part


def _regex_extractor(expression: str) -> Extractor:
    pattern = re.compile(expression.encode())

    def extract(view: ResponseView) -> str | None:
        m = pattern.search(view.content)
        found = m.group(1) if m is not None and pattern.groups else m.group(0) if m is not None else None
        return None if found is None else found.decode("utf-8", "replace")  # (a)|b can match without its group
    return extract


def compile_extractor(source: Source) -> Extractor:
    """A function that reads ``source``'s value from a response, or None when it is absent.

    The same place in a thousand sessions' answers is one function: extractors are pure, so
    they are shared, keyed by what they read (not by the step they read it at).
    """
    return _compiled(source.kind, source.key, source.prefix, source.suffix)


@lru_cache(maxsize=65536)
def _compiled(kind: str, key: str, prefix: str, suffix: str) -> Extractor:
    if kind == "json":
        return _json_extractor(key)
    if kind == "header":
        return _header_extractor(key, prefix, suffix)
    if kind == "html_input":
        return _attribute_extractor("input", key, "value")
    if kind == "html_meta":
        return _attribute_extractor("meta", key, "content")
    if kind == "cookie":
        return lambda view: view.cookie(key)
    return _regex_extractor(key)


def recorded_view(request: Request) -> ResponseView | None:
    """The recorded response of ``request`` seen as the replayer sees a live one."""
    response = request.response
    if response is None:
        return None
    headers = {name.lower(): value for name, value in response.headers}
    cookies = dict(set_cookie_pair(value) for name, value in response.headers if name.lower() == "set-cookie")
    content = response.body.to_bytes() if response.body is not None else b""
    return ResponseView(lambda n: headers.get(n.lower()), content, cookies.get)
