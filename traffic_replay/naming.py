"""Endpoint templates for stats names: ``/items/42?x=1`` becomes ``/items/{id}``.

Locust groups its statistics by name; raw URLs would give one row per item and per
query string. Segments that look like identifiers become placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from traffic_replay.specs import NamePattern

_PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\d+$"), "{id}"),
    (re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"), "{uuid}"),
    # Hex ids (object ids, hashes) need a digit so that words like "facade" stay.
    (re.compile(r"^(?=[^/]*\d)[0-9a-fA-F]{8,}$"), "{hex}"),
    # Long opaque tokens: base64url-ish, at least 20 chars, mixing letters and digits.
    (re.compile(r"^(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z0-9_\-.~=+%]{20,}$"), "{token}"),
)


_SHORTEST = 8
"""Only a number is an id shorter than this (the other placeholders need 8 characters or more): the
words of a path ("api", "items") are answered without trying every pattern."""
_NUMBER = _PLACEHOLDERS[0][0].match


def segment_template(segment: str) -> str:
    if len(segment) < _SHORTEST:
        return "{id}" if _NUMBER(segment) else segment
    for pattern, placeholder in _PLACEHOLDERS:
        if pattern.match(segment):
            return placeholder
    return segment


def endpoint_template(path: str) -> str:
    """The stats name of a request path: query dropped, id-like segments replaced."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return "/".join(segment_template(s) if s else s for s in path.split("/"))


NamingMode = Literal["template", "path", "url"]


class StatsNamer:
    """How requests are named in the stats: patterns first, then the mode.

    ``template`` (default) is ``endpoint_template``; ``path`` keeps the path as recorded
    without its query; ``url`` keeps path and query. A pattern ``REGEX=NAME`` names every
    path (with its query) that the regex matches; NAME may refer to groups (``\\1``).
    """

    def __init__(self, mode: NamingMode = "template", patterns: Sequence[NamePattern] = ()) -> None:
        self.mode = mode
        self.patterns = [(re.compile(p.regex), p.name) for p in patterns]
        self._names: dict[str, str] = {}
        """One object per name: a prepared step holds its name, and a million steps have a few dozen."""

    @property
    def key(self) -> str:
        """Its configuration in one string: two namers of the same key name every path alike."""
        return "\0".join([self.mode, *(f"{pattern.pattern}\0{name}" for pattern, name in self.patterns)])

    def __call__(self, path: str) -> str:
        name = self._name(path)
        return self._names.setdefault(name, name)

    def _name(self, path: str) -> str:
        for pattern, name in self.patterns:
            if m := pattern.search(path):
                return m.expand(name)
        if self.mode == "url":
            return path
        if self.mode == "path":
            return path.split("?", 1)[0]
        return endpoint_template(path)
