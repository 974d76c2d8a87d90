"""Texts with holes: where live values go into a prepared request, and how each is encoded."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import orjson

from traffic_replay.correlation.model import ENCODERS, Encoding

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-]")


def find_token(text: str, value: str, start: int = 0) -> int:
    """Index of ``value`` in ``text`` as a whole token (not inside a longer id), or -1."""
    while (at := text.find(value, start)) >= 0:
        before = text[at - 1] if at > 0 else ""
        after = text[at + len(value)] if at + len(value) < len(text) else ""
        if not (before and _TOKEN_CHARS.match(before)) and not (after and _TOKEN_CHARS.match(after)):
            return at
        start = at + 1
    return -1


class Template:
    """A text with holes: literal parts and (variable, encoder) pairs."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[str | tuple[int, Callable[[str], str]], ...]) -> None:
        self.parts = parts

    def render(self, values: list[str]) -> str:
        return "".join(p if isinstance(p, str) else p[1](values[p[0]]) for p in self.parts)


Encoder = Callable[[str], str]
Span = tuple[int, int, int, Encoder]  # start, end, variable, encoder
Needle = tuple[int, Encoding, str]  # variable, encoding, the text to replace wherever it stands as a token
Leaf = tuple[int, str, tuple[int, int] | None]  # variable, JSON path, span in the leaf's string (None: all of it)

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Private-use characters: no JSON encoder escapes them, no recorded body is likely to hold them.
_IN_STRING = re.compile("\ue000([0-9]+)\ue001")
_WHOLE_VALUE = re.compile('"\ue002([0-9]+)\ue003"')


def _json_string(value: str) -> str:
    return orjson.dumps(value).decode()[1:-1]


def _json_value(value: str) -> str:
    """A leaf that was a number: a number again when the live value is one, else a string."""
    return value if _JSON_NUMBER.fullmatch(value) else orjson.dumps(value).decode()


def build_template(text: str, needles: list[Needle], spans: list[Span] | None = None) -> Template | None:
    """``text`` with holes at ``spans`` and at every whole-token occurrence of each needle, or None."""
    holes = list(spans or ())
    for var, encoding, needle in needles:
        start = 0
        while (at := find_token(text, needle, start)) >= 0:
            holes.append((at, at + len(needle), var, ENCODERS[encoding]))
            start = at + len(needle)
    if not holes:
        return None
    parts: list[str | tuple[int, Encoder]] = []
    cursor = 0
    for begin, end, var, encode in sorted(holes, key=lambda s: (s[0], -s[1])):
        if begin < cursor:
            continue  # overlaps a longer value already taken
        parts += [text[cursor:begin], (var, encode)]
        cursor = end
    parts.append(text[cursor:])
    return _shared(tuple(p for p in parts if p != ""))


@lru_cache(maxsize=65536)
def _shared(parts: tuple[str | tuple[int, Encoder], ...]) -> Template:
    # The same header with the same token on every request of a session: one template for all.
    return Template(parts)


def _parent(document: object, path: str) -> tuple[dict[str, object] | list[object], str | int] | None:
    keys = path.split(".")
    node = document
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else (
            node[int(key)] if isinstance(node, list) and key.isdigit() and int(key) < len(node) else None)
    last = keys[-1]
    if isinstance(node, dict) and last in node:
        return node, last
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node, int(last)
    return None


def json_template(text: str, leaves: list[Leaf], needles: list[Needle]) -> Template | None:
    """A JSON body with holes at the leaves that carry live values, re-serialised compactly.

    Holes go where the structure says, not where the text matches: in ``{"quantity": 1,
    "item_id": 1}`` only the second ``1`` is the item. Each leaf is marked in the parsed
    document, which is then written again; a body that does not parse keeps the needles.
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return build_template(text, needles)
    by_leaf: dict[str, list[tuple[int, tuple[int, int] | None]]] = {}
    for var, path, span in leaves:
        by_leaf.setdefault(path, []).append((var, span))
    for path, holes in by_leaf.items():
        found = _parent(document, path)
        if found is None:
            continue
        node, key = found
        leaf = node[key]  # type: ignore[index]
        if not isinstance(leaf, str):
            node[key] = f"\ue002{holes[0][0]}\ue003"  # type: ignore[index]
            continue
        pieces: list[str] = []
        cursor = 0
        for var, span in sorted(holes, key=lambda h: h[1] or (0, len(leaf))):
            begin, end = span or (0, len(leaf))
            if begin >= cursor:
                pieces += [leaf[cursor:begin], f"\ue000{var}\ue001"]
                cursor = end
        node[key] = "".join(pieces) + leaf[cursor:]  # type: ignore[index]
    written = orjson.dumps(document).decode()
    spans: list[Span] = [(m.start(), m.end(), int(m.group(1)), _json_value) for m in _WHOLE_VALUE.finditer(written)]
    spans += [(m.start(), m.end(), int(m.group(1)), _json_string) for m in _IN_STRING.finditer(written)]
    return build_template(written, needles, spans)
