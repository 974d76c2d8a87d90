"""Endpoint templates for stats names: ``/items/42?x=1`` becomes ``/items/{id}``.

Locust groups its statistics by name; raw URLs would give one row per item and per
query string. Segments that look like identifiers become placeholders.
"""

from __future__ import annotations

import re

_PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\d+$"), "{id}"),
    (re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"), "{uuid}"),
    # Hex ids (object ids, hashes) need a digit so that words like "facade" stay.
    (re.compile(r"^(?=[^/]*\d)[0-9a-fA-F]{8,}$"), "{hex}"),
    # Long opaque tokens: base64url-ish, at least 20 chars, mixing letters and digits.
    (re.compile(r"^(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z0-9_\-.~=+%]{20,}$"), "{token}"),
)


def segment_template(segment: str) -> str:
    for pattern, placeholder in _PLACEHOLDERS:
        if pattern.match(segment):
            return placeholder
    return segment


def endpoint_template(path: str) -> str:
    """The stats name of a request path: query dropped, id-like segments replaced."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return "/".join(segment_template(s) if s else s for s in path.split("/"))
