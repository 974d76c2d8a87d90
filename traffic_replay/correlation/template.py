"""Texts with holes: where live values go into a prepared request, and how each is encoded."""

from __future__ import annotations

import re
from collections.abc import Callable

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


def build_template(text: str, holes: list[tuple[int, Encoding, str]]) -> Template | None:
    """``text`` with every whole-token occurrence of each needle made a hole, or None."""
    spans: list[tuple[int, int, int, Encoding]] = []
    for var, encoding, needle in holes:
        start = 0
        while (at := find_token(text, needle, start)) >= 0:
            spans.append((at, at + len(needle), var, encoding))
            start = at + len(needle)
    if not spans:
        return None
    parts: list[str | tuple[int, Callable[[str], str]]] = []
    cursor = 0
    for begin, end, var, encoding in sorted(spans, key=lambda s: (s[0], -s[1])):
        if begin < cursor:
            continue  # overlaps a longer value already taken
        parts += [text[cursor:begin], (var, ENCODERS[encoding])]
        cursor = end
    parts.append(text[cursor:])
    return Template(tuple(p for p in parts if p != ""))
