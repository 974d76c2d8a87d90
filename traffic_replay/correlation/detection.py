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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote_plus

from traffic_replay.correlation import evidence, places
from traffic_replay.correlation import sends as sending
from traffic_replay.correlation.evidence import (
    Candidate,
    Offers,
    SentUnder,
    choose,
    echoes,
    first_sent,
    note_sent,
    sent_step,
    source,
    source_tuple,
    telling,
)
from traffic_replay.correlation.model import Correlation, Source, Use
from traffic_replay.correlation.places import MIN_PART, SKIPPED_REQUEST_HEADERS, body_offers, header_offers, json_leaves
from traffic_replay.correlation.places import offered as offered_at
from traffic_replay.correlation.sends import Send, encodings, sends, use_at
from traffic_replay.correlation.template import find_token
from traffic_replay.format import Request, Session

__all__ = ["Analysis", "Rejected", "Unsourced", "analyse", "detect", "json_leaves", "request_texts",
           "unsourced_values", "uses_in"]

def request_texts(request: Request) -> Iterator[tuple[Literal["path", "header", "body"], str, str]]:
    yield "path", "", request.path
    for name, value in request.headers:
        if name.lower() not in SKIPPED_REQUEST_HEADERS:
            yield "header", name, value
    if request.body is not None and request.body.encoding == "text":
        yield "body", "", request.body.data


def uses_in(request: Request, step: int, value: str) -> list[Use]:
    uses: list[Use] = []
    for place, name, text in request_texts(request):
        for encoding, form in encodings(value):
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


def _sent_as(request_sends: list[Send], value: str) -> set[str]:
    """The names ``value`` stands under in one request ("/" for a path segment): is an answer an echo?"""
    return {f.key if f.keyed else "/" for sent, f, _ in request_sends if sent == value}


def analyse(session: Session) -> Analysis:
    """The correlations of one session, in the order their first use appears, and what was rejected."""
    requests = session.requests
    # First pass: what the client sends, under which names, first when. Only what some request
    # sends can be carried over, so the answers' other values are never indexed; and since every
    # question the second pass asks of it is "sent under this name by step s?" with s no later
    # than the step it is at, the whole session's answer serves from the start.
    # (What each request sends is kept for the second pass: working it out is a fifth of the
    # analysis, and what it holds, mostly tuples the caches share, is less than the index at its end.)
    kept: list[list[Send]] = []
    sent: dict[str, SentUnder] = {}
    for step, request in enumerate(requests):
        request_sends = sends(request)
        kept.append(request_sends)
        for value, f, _ in request_sends:
            under = sent.get(value)
            if under is None:
                sent[value] = (f.key, step)
            elif not (isinstance(under, tuple) and under[0] == f.key):  # (the same pair again: nothing new)
                note_sent(sent, value, f.key, step)
    sendable = sent.keys()
    offered: dict[str, Offers] = {}
    first_offered: dict[str, int] = {}
    owned: set[str] = set()  # values the client sent before any response had them
    found: dict[tuple[str, tuple[int, str, str, str, str]], Correlation] = {}
    rejected: dict[str, Rejected] = {}
    for step, request in enumerate(requests):
        request_sends, kept[step] = kept[step], _DONE  # (what is done with goes)
        placed: set[tuple[str, str, str, tuple[int, int] | None, str | None]] | None = None
        for value, f, inner in request_sends:
            candidates = offered.get(value)
            if candidates is None:
                continue
            best, reason, doubted = choose(value, f, inner is None, candidates, first_offered[value], sent.get(value))
            if best is None:
                if reason and doubted is not None and telling(doubted) and value not in rejected:
                    rejected[value] = Rejected(value, source(doubted), step, f"{f.place} {f.name}".strip(), reason)
                continue
            use = use_at(step, request, f, value, inner)
            where = (value, use.place, use.name, use.span, use.json_path)
            if placed is None:
                placed = set()
            if where not in placed:
                placed.add(where)
                key = (value, source_tuple(best))
                correlation = found.get(key)
                if correlation is None:
                    correlation = found[key] = Correlation(value, [source(best)])
                correlation.uses.append(use)
        response = request.response
        if response is None:
            continue
        # What the answer offers of what some request sends: its body's values (one set
        # intersection; each value's offers in document order), then its headers'. Each value's
        # offers are indexed on their own, so the order between values is of no consequence.
        groups = body_offers(request)
        here = [offered_at(value, place) for value in groups.keys() & sendable for place in groups[value]] \
            if groups else []
        body_end = len(here)
        for name, header in response.headers:
            for offer in header_offers(name, header):
                if offer[0] in sendable and offer not in here[body_end:]:  # (the same header twice: one offer)
                    here.append(offer)
        if not here:
            continue
        creation = request.method in ("POST", "PUT") or response.status == 201
        mine: set[str] | None = None  # what this request sent: an answer that has it may be an echo
        for offer in here:
            value = offer[0]
            if value in owned:
                continue
            under = sent[value]
            if len(value) >= MIN_PART and value not in offered and first_sent(under) <= step:
                owned.add(value)  # the client's own: a typed name, a search term
                continue
            candidates = offered.get(value)
            if candidates is None:
                candidates = offered[value] = Offers()
                first_offered[value] = step
            if len(value) < MIN_PART and sent_step(under, offer[3]) <= step:
                # The client sent this short value under the same name already: ``unconvincing``
                # would turn the offer down at every use, and a value like "1" is offered by
                # nearly every answer of a long session, crowding out the offers that count.
                continue
            if mine is None:
                mine = {sent_value for sent_value, _, _ in request_sends}
            located = offer[6]
            sent_as = _sent_as(request_sends, value) if value in mine else None
            candidates.add(Candidate(step, *offer, request.path, creation or located, echoes(value, offer[3], sent_as)))
    for value in {c.value for c in found.values()}:
        rejected.pop(value, None)
    return Analysis(list(found.values()), list(rejected.values()))


_DONE: list[Send] = []


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
    sending.forget()
    places.forget()
    evidence.forget()
