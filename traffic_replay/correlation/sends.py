"""What a request sends at its structural places, and where exactly, as the detector needs it.

Worked out once per distinct path, header pair and small body (a recording repeats them a
great deal), as plain tuples that the caches share between requests.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from traffic_replay.correlation.model import ENCODERS, Encoding, Use
from traffic_replay.correlation.places import (
    CACHED_BODY,
    DISTINCT,
    MIN_PART,
    SCHEMED,
    Field,
    body_fields,
    header_fields,
    parts,
    path_fields,
)
from traffic_replay.correlation.template import find_token
from traffic_replay.format import Request

Send = tuple[str, Field, tuple[int, int] | None]
"""(value, the field it stands in, its span inside the field's value when it is a delimited part)"""


@lru_cache(maxsize=DISTINCT)
def encodings(value: str) -> tuple[tuple[Encoding, str], ...]:
    forms: list[tuple[Encoding, str]] = [("raw", value)]
    # Clients differ in what they leave unescaped; ':' and '/' are legal in queries and forms.
    for encoding in ("quote_plus", "quote", "quote_lenient"):
        encoded = ENCODERS[encoding](value)
        if all(encoded != seen for _, seen in forms):
            forms.append((encoding, encoded))
    return tuple(forms)


def _field_sends(f: Field, add: Callable[[Send], None]) -> None:
    value = f.value
    if value:
        add((value, f, None))
    if len(value) <= MIN_PART or (f.place == "header" and SCHEMED.match(value)):
        return  # "Bearer xyz": the scheme is no value, and the credential is a field of its own
    for start, end in parts(value):
        add((value[start:end], f, (start, end)))


@lru_cache(maxsize=DISTINCT)
def _header_sends(name: str, value: str) -> tuple[Send, ...]:
    # Most header pairs of a recording repeat on every request: worked out once.
    found: list[Send] = []
    for f in header_fields(name, value):
        _field_sends(f, found.append)
    return tuple(found)


@lru_cache(maxsize=DISTINCT)
def _path_sends(path: str) -> tuple[Send, ...]:
    # The same paths come back again and again (every user's GET /api/cart).
    found: list[Send] = []
    for f in path_fields(path):
        _field_sends(f, found.append)
    return tuple(found)


@lru_cache(maxsize=4096)
def _body_sends(content_type: str, data: str) -> tuple[Send, ...]:
    found: list[Send] = []
    for f in body_fields(content_type, data):
        _field_sends(f, found.append)
    return tuple(found)


def sends(request: Request) -> list[Send]:
    """Every value ``request`` sends at a structural place: whole, or a delimited part (its span)."""
    found = list(_path_sends(request.path))
    for name, value in request.headers:
        found.extend(_header_sends(name, value))
    body = request.body
    if body is not None and body.encoding == "text":
        sends = _body_sends if len(body.data) <= CACHED_BODY else _body_sends.__wrapped__
        found.extend(sends(body.content_type or "", body.data))
    return found


def use_at(step: int, request: Request, f: Field, value: str, inner: tuple[int, int] | None) -> Use:
    """Where exactly ``request`` (step ``step``) sends ``value`` in the field ``f``."""
    if f.place == "header":
        return Use(step, "header", f.name)
    if f.json_path is not None:
        return Use(step, "body", json_path=f.json_path, span=inner)
    start, end = inner or (0, len(f.value))
    if f.encoding is not None:
        encode = ENCODERS[f.encoding]
        at = f.start + len(encode(f.value[:start]))
        return Use(step, f.place, encoding=f.encoding, span=(at, at + len(encode(f.value[start:end]))))
    # Written in a way no encoder reproduces: find the value's own form inside the field.
    text = request.path if f.place == "path" else request.body.data if request.body is not None else ""
    raw = text[f.start:f.end]
    for encoding, form in encodings(value):
        if (at := find_token(raw, form)) >= 0:
            return Use(step, f.place, encoding=encoding, span=(f.start + at, f.start + at + len(form)))
    return Use(step, f.place)


def forget() -> None:
    """Let go of what was worked out once per distinct header pair, path, body and value."""
    for cached in (_header_sends, _path_sends, _body_sends, encodings):
        cached.cache_clear()
