"""Whether an offer and a use of the same value are evidence that the server chose it, and which offer a use takes.

The rules are the detector's (``detection`` says them in words); this module holds them as
code, over the plain tuples of its index: a ``Candidate`` per offer, made for every value of
every answer that some request sends, so nothing here is an object more than it must be.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

from traffic_replay.correlation.model import ExtractKind, Source
from traffic_replay.correlation.places import MIN_PART, Field, offer_context, singular, stem

LONG = 16  # a value this long is a token whatever its letters
MAX_CANDIDATES = 64
# Names under which a server hands out what it chose: ids, names, paths, codes, tokens.
_ID_NAMES = ("id", "pk", "uuid", "guid", "ulid", "oid", "name", "filename", "path", "slug", "code", "state",
             "nonce", "token", "key", "ref", "handle", "sid")
_HOLDS_IDS = re.compile(r"^(?:" + "|".join(_ID_NAMES) + r")$|[_\-.](?:" + "|".join(_ID_NAMES) + r")$|csrf|xsrf",
                        re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z](?:Id|ID|Uuid|Name|Path|Slug|Code|Token|Key|Nonce)$")

NEVER = sys.maxsize
"""The step at which a value was sent under a name it was never sent under."""

SentUnder = tuple[str, int] | dict[str, int]
"""The names a value was sent under, each with the first step that did: (name, step) while there
is one name (nearly always: a dict each would be 184 bytes a value), a dict from the second on."""


@lru_cache(maxsize=4096)
def holds_ids(key: str) -> bool:
    return bool(_HOLDS_IDS.search(key) or _CAMEL_ID.search(key))


def note_sent(sent: dict[str, SentUnder], value: str, key: str, step: int) -> None:
    """Record that step ``step`` sent ``value`` under ``key`` (only the first step per name counts)."""
    under = sent.get(value)
    if under is None:
        sent[value] = (key, step)
    elif isinstance(under, tuple):
        if under[0] != key:
            sent[value] = {under[0]: under[1], key: step}
    elif key not in under:
        under[key] = step


def sent_step(under: SentUnder | None, key: str) -> int:
    """The first step that sent the value under ``key``, or NEVER."""
    if under is None:
        return NEVER
    if isinstance(under, tuple):
        return under[1] if under[0] == key else NEVER
    return under.get(key, NEVER)


def first_sent(under: SentUnder) -> int:
    """The first step that sent the value under any name."""
    return under[1] if isinstance(under, tuple) else min(under.values())


class Candidate(NamedTuple):
    """One offer of a value, as the index keeps it: what the answer of step ``step`` said, and about what.

    Flat, one tuple an offer: its ``Source`` is made only for the offers a use takes.
    """

    step: int
    value: str
    kind: ExtractKind
    source_key: str
    key: str  # the name it stands under: JSON key, cookie, input, meta or header name, Location segment before it
    prefix: str
    suffix: str
    located: bool  # a part of a Location: the server chose it as where to go next
    path: str  # of the request it answered: what it was about
    creation: bool  # answered a request that made something: POST, PUT, 201, a Location
    echo: bool  # its own request sent the value: the answer repeats it


def source(c: Candidate) -> Source:
    return Source(c.step, c.kind, c.source_key, c.prefix, c.suffix)


def source_tuple(c: Candidate) -> tuple[int, str, str, str, str]:
    """What ``source(c)`` is equal to (and hashes as), without making one."""
    return c.step, c.kind, c.source_key, c.prefix, c.suffix


def _context(c: Candidate) -> frozenset[str]:
    return offer_context(c.path, c.kind, c.source_key, c.key, c.located)


def placed(c: Candidate) -> bool:
    """A Location part that is an id: ``/items/1`` is where the server put something, ``/account`` a page."""
    return c.located and (len(c.value) >= LONG or any(ch.isdigit() for ch in c.value))


def telling(c: Candidate) -> bool:
    """Does it look like the server chose the value? Only then is a rejection worth a warning."""
    return placed(c) or holds_ids(c.key) or (c.creation and not c.echo and not c.located)


def echoes(value: str, key: str, sent_as: set[str] | None) -> bool:
    """Does the answer repeat what its own request sent? ``GET /items/1`` → ``{"id": 1}`` does;
    ``POST /items {"quantity": 1}`` → ``{"id": 1}`` does not: a short value only under its own name."""
    if not sent_as:
        return False
    return len(value) >= MIN_PART or "/" in sent_as or key in sent_as


class Offers:
    """The latest offers of one value, newest first; those that created something are kept apart,
    so that any number of later echoes (a "1" in every page) cannot push them out."""

    __slots__ = ("created", "other")

    def __init__(self) -> None:
        self.created: list[Candidate] | None = None  # (rare: made when first needed)
        self.other: list[Candidate] = []

    def add(self, candidate: Candidate) -> None:
        if candidate.creation and not candidate.echo:
            if self.created is None:
                self.created = []
            kept = self.created
        else:
            kept = self.other
        kept.append(candidate)
        if len(kept) >= 2 * MAX_CANDIDATES:  # trimmed now and then, not at every offer
            del kept[:MAX_CANDIDATES]

    def newest_first(self) -> Iterator[Candidate]:
        if self.created is not None:
            yield from reversed(self.created[-MAX_CANDIDATES:])
        yield from reversed(self.other[-MAX_CANDIDATES:])


@lru_cache(maxsize=4096)
def _about(key: str, keyed: bool) -> frozenset[str]:
    word = stem(key) if keyed else singular(key) if key and not any(c.isdigit() for c in key) else ""
    return frozenset({word}) if word else frozenset()


def field_context(f: Field) -> frozenset[str]:
    """What a use is about: the segment before it (``/items/1`` → item) or its key (``item_id`` → item)."""
    return _about(f.key, f.keyed)


def unconvincing(value: str, c: Candidate, f: Field, whole: bool, under: SentUnder | None) -> tuple[str, bool] | None:
    """Why this offer and this use are not evidence enough that the value is the server's, or None.

    With the reason comes whether it is worth a warning: a doubt, not a decided "the client's".
    """
    if len(value) < MIN_PART:
        if not whole:
            return "a short value inside a longer one", False
        if (at := sent_step(under, c.key)) <= c.step:
            return f"the client sent it as {c.key!r} (step {at + 1}) before the server did", False
        if not (placed(c) or holds_ids(c.key) or holds_ids(f.key)):
            return f"a short value under {c.key!r}, not a name that holds ids", True
        if c.kind == "json" and not c.creation and any(k.isdigit() for k in c.source_key.split(".")):
            # The fifth item of a catalogue: the client picked it, and it is the same for every user.
            return f"a short value picked from a list ({c.source_key}): the client's choice", False
        if f.keyed and not holds_ids(f.key) and not (field_context(f) & _context(c)):
            return f"a short value sent as {f.key!r}, not a name that holds ids", True
    elif (len(value) < LONG and not any(ch.isdigit() for ch in value)
          and not (placed(c) or holds_ids(c.key) or holds_ids(f.key))):
        return f"no digit, and {c.key!r} is not a name that holds ids or names", True
    return None


Choice = tuple[Candidate | None, str | None, Candidate | None]
"""(the offer taken, or None and why none was, and the offer a warning names when the reason is worth one)"""


def choose(value: str, f: Field, whole: bool, candidates: Offers, first: int, under: SentUnder | None) -> Choice:
    """The offer a use of ``value`` in ``f`` takes; ``first``: the step of the value's first offer."""
    if (at := sent_step(under, f.key)) <= first:
        return None, f"the client sent it as {f.key!r} (step {at + 1}) before any response had it", None
    # What the use is about tells a user id 1 from an item id 1; a longer value is rarely two
    # things at once, and a folder name before it ("done/") would only mislead.
    about = field_context(f) if len(value) < MIN_PART else frozenset()
    best: Candidate | None = None
    best_score: tuple[bool, bool, bool, int] | None = None
    best_ideal, best_step = False, 0
    reason: tuple[str, bool] | None = None
    doubted: Candidate | None = None
    # Newest first: once an offer is all of these, only one of the same answer can still beat it
    # (ties go to the first the answer gave: its body before its headers).
    ideal = (bool(about), True, True)
    for c in candidates.newest_first():
        if best_ideal and c.step < best_step:
            break
        why = unconvincing(value, c, f, whole, under)
        if why is not None:
            if reason is None or (why[1] and not reason[1]):
                reason, doubted = why, c
            continue
        score = (bool(about) and bool(about & _context(c)), c.creation and not c.echo, not c.echo, c.step)
        if best_score is None or score >= best_score:
            best, best_score, best_step = c, score, c.step
            best_ideal = score[:3] == ideal
    if best is not None and best.echo:
        # Only answers that repeat what their own request sent: the client chose the value.
        return None, "the server only ever echoed it", None
    if best is None and reason is not None:
        return None, reason[0], doubted if reason[1] else None
    return best, None, None


def forget() -> None:
    for cached in (holds_ids, _about):
        cached.cache_clear()
