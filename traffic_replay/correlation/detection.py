"""Find, from a recording alone, the values a server handed out that later requests sent back.

A CSRF token in a hidden input, an id in a JSON answer or a ``Location`` header, a bearer
token: replayed verbatim they make a session fail (403, 404, 401). For each such value the
detector names its *source* (the response it is read from live, and how) and its *uses*
(where later requests carry it). The replayer compiles both once per session file; each
virtual user then extracts live values from its own responses and substitutes them.

Detection is by evidence, not by the look of a value (a fresh database's first id is
``1``; a notebook server names a new file ``untitled.txt``):

- both ends are structural places (``places``): a response hands the value out as a whole
  JSON value, Location segment, header, hidden input, meta tag or cookie; a later request
  sends it as a whole path segment, query, form or JSON value or header value, or, for 4+
  characters, as a delimited part of one (``done/untitled.txt``), never inside a word;
- a value the client sent before any response had it is the client's (a typed username);
  a short one (1-3 characters) only under the same name (a page number echoed back);
- short values, and values without a digit shorter than a token, need a name that holds
  ids or names at one end (``id``, ``*_id``, ``name``, ``path``, ``code``, ``token``...)
  or a place in a ``Location``;
- each use takes the most recent response before it that offers the value, preferring one
  about the same thing (``/items/1`` and the answer to ``POST /items``), then the answer
  of a request that created something, then one that does not merely echo what its own
  request sent.

Pure Python: no mitmproxy, no locust.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, NamedTuple
from urllib.parse import unquote_plus

from traffic_replay.correlation import places
from traffic_replay.correlation.model import ENCODERS, Correlation, Encoding, Source, Use
from traffic_replay.correlation.places import (
    CACHED_BODY,
    MIN_PART,
    SCHEMED,
    SKIPPED_REQUEST_HEADERS,
    Field,
    Offer,
    Offered,
    body_fields,
    header_fields,
    json_leaves,
    make_offer,
    parts,
    path_fields,
    raw_offers,
    singular,
    stem,
)
from traffic_replay.correlation.template import find_token
from traffic_replay.format import Request, Session

__all__ = ["Analysis", "Rejected", "Unsourced", "analyse", "detect", "json_leaves", "request_texts",
           "unsourced_values", "uses_in"]

LONG = 16  # a value this long is a token whatever its letters
MAX_CANDIDATES = 64
# Names under which a server hands out what it chose: ids, names, paths, codes, tokens.
_ID_NAMES = ("id", "pk", "uuid", "guid", "ulid", "oid", "name", "filename", "path", "slug", "code", "state",
             "nonce", "token", "key", "ref", "handle", "sid")
_HOLDS_IDS = re.compile(r"^(?:" + "|".join(_ID_NAMES) + r")$|[_\-.](?:" + "|".join(_ID_NAMES) + r")$|csrf|xsrf",
                        re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z](?:Id|ID|Uuid|Name|Path|Slug|Code|Token|Key|Nonce)$")


@lru_cache(maxsize=4096)
def holds_ids(key: str) -> bool:
    return bool(_HOLDS_IDS.search(key) or _CAMEL_ID.search(key))


def request_texts(request: Request) -> Iterator[tuple[Literal["path", "header", "body"], str, str]]:
    yield "path", "", request.path
    for name, value in request.headers:
        if name.lower() not in SKIPPED_REQUEST_HEADERS:
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




@dataclass(frozen=True, slots=True)
class Rejected:
    """A value seen at a structural place on both ends that the detector did not carry over, and why."""

    value: str
    source: Source
    step: int  # of the use
    place: str
    reason: str


@dataclass(slots=True)
class Analysis:
    correlations: list[Correlation] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class _Candidate:
    __slots__ = ("offer", "creation", "echo")

    def __init__(self, offer: Offer, creation: bool, echo: bool) -> None:
        self.offer = offer
        self.creation = creation  # answered a request that made something: POST, PUT, 201, a Location
        self.echo = echo  # its own request sent the value: the answer repeats it

    @property
    def telling(self) -> bool:
        """Does it look like the server chose the value? Only then is a rejection worth a warning."""
        offer = self.offer
        return _placed(offer) or holds_ids(offer.key) or (self.creation and not self.echo and not offer.located)


class _Offers:
    """The latest offers of one value, newest first; those that created something are kept apart,
    so that any number of later echoes (a "1" in every page) cannot push them out."""

    __slots__ = ("created", "other")

    def __init__(self) -> None:
        self.created: list[_Candidate] | None = None  # (rare: made when first needed)
        self.other: list[_Candidate] = []

    def add(self, candidate: _Candidate) -> None:
        if candidate.creation and not candidate.echo:
            if self.created is None:
                self.created = []
            kept = self.created
        else:
            kept = self.other
        kept.append(candidate)
        if len(kept) >= 2 * MAX_CANDIDATES:  # trimmed now and then, not at every offer
            del kept[:MAX_CANDIDATES]

    def newest_first(self) -> Iterator[_Candidate]:
        if self.created is not None:
            yield from reversed(self.created[-MAX_CANDIDATES:])
        yield from reversed(self.other[-MAX_CANDIDATES:])


def _placed(offer: Offer) -> bool:
    """A Location part that is an id: ``/items/1`` is where the server put something, ``/account`` a page."""
    return offer.located and (len(offer.value) >= LONG or any(ch.isdigit() for ch in offer.value))


def _echoes(offer: Offer, sent_as: set[str] | None) -> bool:
    """Does the answer repeat what its own request sent? ``GET /items/1`` → ``{"id": 1}`` does;
    ``POST /items {"quantity": 1}`` → ``{"id": 1}`` does not: a short value only under its own name."""
    if not sent_as:
        return False
    return len(offer.value) >= MIN_PART or "/" in sent_as or offer.key in sent_as


Send = tuple[str, Field, tuple[int, int] | None]


def _field_sends(f: Field, add: Callable[[Send], None]) -> None:
    value = f.value
    if value:
        add((value, f, None))
    if len(value) <= MIN_PART or (f.place == "header" and SCHEMED.match(value)):
        return  # "Bearer xyz": the scheme is no value, and the credential is a field of its own
    for start, end in parts(value):
        add((value[start:end], f, (start, end)))


@lru_cache(maxsize=65536)
def _header_sends(name: str, value: str) -> tuple[Send, ...]:
    # Most header pairs of a recording repeat on every request: worked out once.
    found: list[Send] = []
    for f in header_fields(name, value):
        _field_sends(f, found.append)
    return tuple(found)


@lru_cache(maxsize=65536)
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


def _sends(request: Request) -> list[Send]:
    """Every value ``request`` sends at a structural place: whole, or a delimited part (its span)."""
    found = list(_path_sends(request.path))
    for name, value in request.headers:
        found.extend(_header_sends(name, value))
    body = request.body
    if body is not None and body.encoding == "text":
        sends = _body_sends if len(body.data) <= CACHED_BODY else _body_sends.__wrapped__
        found.extend(sends(body.content_type or "", body.data))
    return found


def _context(f: Field) -> frozenset[str]:
    """What a use is about: the segment before it (``/items/1`` → item) or its key (``item_id`` → item)."""
    word = stem(f.key) if f.keyed else singular(f.key) if f.key and not any(c.isdigit() for c in f.key) else ""
    return frozenset({word}) if word else frozenset()


def _unconvincing(value: str, c: _Candidate, f: Field, whole: bool, sent: dict[str, int]) -> tuple[str, bool] | None:
    """Why this offer and this use are not evidence enough that the value is the server's, or None.

    With the reason comes whether it is worth a warning: a doubt, not a decided "the client's".
    """
    offer = c.offer
    named = _placed(offer) or holds_ids(offer.key) or holds_ids(f.key)
    if len(value) < MIN_PART:
        if not whole:
            return "a short value inside a longer one", False
        if sent.get(offer.key, offer.source.step + 1) <= offer.source.step:
            return f"the client sent it as {offer.key!r} (step {sent[offer.key] + 1}) before the server did", False
        if not named:
            return f"a short value under {offer.key!r}, not a name that holds ids", True
        if offer.source.kind == "json" and not c.creation and any(k.isdigit() for k in offer.source.key.split(".")):
            # The fifth item of a catalogue: the client picked it, and it is the same for every user.
            return f"a short value picked from a list ({offer.source.key}): the client's choice", False
        if f.keyed and not holds_ids(f.key) and not (_context(f) & offer.context):
            return f"a short value sent as {f.key!r}, not a name that holds ids", True
    elif len(value) < LONG and not any(ch.isdigit() for ch in value) and not named:
        return f"no digit, and {offer.key!r} is not a name that holds ids or names", True
    return None


class _Choice(NamedTuple):
    best: _Candidate | None
    reason: str | None = None  # why none was taken
    doubted: _Candidate | None = None  # the offer a warning names, when the reason is worth one


def _choose(value: str, f: Field, whole: bool, candidates: _Offers, first: int, sent: dict[str, int]) -> _Choice:
    if sent.get(f.key, first + 1) <= first:
        return _Choice(None, f"the client sent it as {f.key!r} (step {sent[f.key] + 1}) before any response had it")
    # What the use is about tells a user id 1 from an item id 1; a longer value is rarely two
    # things at once, and a folder name before it ("done/") would only mislead.
    about = _context(f) if len(value) < MIN_PART else frozenset()
    best: _Candidate | None = None
    best_score: tuple[bool, bool, bool, int] | None = None
    reason: tuple[str, bool] | None = None
    doubted: _Candidate | None = None
    # Newest first: once an offer is all of these, only one of the same answer can still beat it
    # (ties go to the first the answer gave: its body before its headers).
    ideal = (bool(about), True, True)
    for c in candidates.newest_first():
        if best_score is not None and best_score[:3] == ideal and c.offer.source.step < best_score[3]:
            break
        why = _unconvincing(value, c, f, whole, sent)
        if why is not None:
            if reason is None or (why[1] and not reason[1]):
                reason, doubted = why, c
            continue
        score = (bool(about & c.offer.context), c.creation and not c.echo, not c.echo, c.offer.source.step)
        if best_score is None or score >= best_score:
            best, best_score = c, score
    if best is not None and best.echo:
        # Only answers that repeat what their own request sent: the client chose the value.
        return _Choice(None, "the server only ever echoed it")
    if best is None and reason is not None:
        return _Choice(None, reason[0], doubted if reason[1] else None)
    return _Choice(best)


def _use(step: int, request: Request, f: Field, value: str, inner: tuple[int, int] | None) -> Use:
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
    for encoding, form in _encodings(value):
        if (at := find_token(raw, form)) >= 0:
            return Use(step, f.place, encoding=encoding, span=(f.start + at, f.start + at + len(form)))
    return Use(step, f.place)


_NOTHING_SENT: dict[str, int] = {}


def analyse(session: Session) -> Analysis:
    """The correlations of one session, in the order their first use appears, and what was rejected."""
    offered: dict[str, _Offers] = {}
    first_offered: dict[str, int] = {}
    sent: dict[str, dict[str, int]] = {}  # value -> the names the client sent it under -> first step
    owned: set[str] = set()  # values the client sent before any response had them
    found: dict[tuple[str, Source], Correlation] = {}
    rejected: dict[str, Rejected] = {}
    # Only what some request sends can be carried over: one pass to know those values first.
    # (kept: working them out is a third of the analysis; they are mostly tuples the caches share)
    all_sends = [_sends(request) for request in session.requests]
    sendable = {value for sends in all_sends for value, _, _ in sends}
    sendable.discard("")
    for step, request in enumerate(session.requests):
        sends = all_sends[step]
        all_sends[step] = []  # (what is done with goes: the index holds the offers from here on)
        placed: set[tuple[str, str, str, tuple[int, int] | None, str | None]] = set()
        for value, f, inner in sends:
            candidates = offered.get(value)
            if candidates is None:
                continue
            best, reason, doubted = _choose(value, f, inner is None, candidates, first_offered[value],
                                            sent.get(value, {}))
            if best is None:
                if reason and doubted is not None and doubted.telling and value not in rejected:
                    rejected[value] = Rejected(value, doubted.offer.source, step, f"{f.place} {f.name}".strip(),
                                               reason)
                continue
            use = _use(step, request, f, value, inner)
            where = (value, use.place, use.name, use.span, use.json_path)
            if where not in placed:
                placed.add(where)
                found.setdefault((value, best.offer.source), Correlation(value, [best.offer.source])).uses.append(use)
        for value, f, _ in sends:
            # (a repeated header pair changes nothing here: its first step is kept)
            keys = sent.get(value)
            if keys is None:
                sent[value] = {f.key: step}
            elif f.key not in keys:
                keys[f.key] = step
        response = request.response
        if response is None:
            continue
        creation = request.method in ("POST", "PUT") or response.status == 201
        mine: set[str] | None = None  # what this request sent: an answer that has it may be an echo
        seen: set[Offered] = set()
        for found_here in raw_offers(request):
            value = found_here[0]
            if value not in sendable or value in owned or found_here in seen:
                continue  # (most of what an answer says is never sent back: no object is made for it)
            seen.add(found_here)
            offer = make_offer(found_here, step, request.path)
            if len(value) >= MIN_PART and value in sent and value not in offered:
                owned.add(value)  # the client's own: a typed name, a search term
                continue
            if mine is None:
                mine = {v for v, _, _ in sends}
            here = {f.key if f.keyed else "/" for v, f, _ in sends if v == value} if value in mine else None
            candidates = offered.get(value)
            if candidates is None:
                candidates = offered[value] = _Offers()
                first_offered[value] = step
            if len(value) < MIN_PART and sent.get(value, _NOTHING_SENT).get(offer.key, step + 1) <= step:
                # The client sent this short value under the same name already: ``_unconvincing``
                # would turn the offer down at every use, and a value like "1" is offered by
                # nearly every answer of a long session, crowding out the offers that count.
                continue
            candidates.add(_Candidate(offer, creation or offer.located, _echoes(offer, here)))
    for value in {c.value for c in found.values()}:
        rejected.pop(value, None)
    return Analysis(list(found.values()), list(rejected.values()))


def detect(session: Session) -> list[Correlation]:
    """The correlations of one session, in the order their first use appears."""
    return analyse(session).correlations


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


def forget_recording() -> None:
    """Let go of what detection worked out once per distinct header, path and body (tens of MiB
    for a large recording): a replay calls it when its sessions are all prepared."""
    for cached in (_header_sends, _path_sends, _body_sends, _encodings):
        cached.cache_clear()
    places.forget()
