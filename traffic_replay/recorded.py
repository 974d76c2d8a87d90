"""What the recording itself says about latency, per endpoint, named as the replay names it.

Keyed by the replay's own stats names (the ``StatsNamer`` its preparation uses), not by
inspect's endpoint templates, so that each row of the summary can put the recorded
median and p95 beside the replayed ones: "the target is 3x slower than when we captured
it" is then a line, not an analysis.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from traffic_replay.format import Session
from traffic_replay.naming import StatsNamer

TOTAL = ("", "Aggregated")
"""The key of every recorded request together: the summary's total row."""


class RecordedLatency(NamedTuple):
    requests: int
    median_ms: float
    p95_ms: float


def _rank(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list, as Locust reads its own."""
    return ordered[max(int(fraction * len(ordered) + 0.5) - 1, 0)]


Durations = dict[tuple[str, str], list[float]]
"""(method, stats name) -> the recorded requests' durations (ms), in no order: what ``latency`` sums up."""


def add_durations(sessions: Iterable[Session], namer: StatsNamer, into: Durations) -> Durations:
    """Each answered request's duration added to ``into`` under its endpoint (as a recording is read)."""
    names: dict[str, str] = {}  # a path is named once, however often it was requested
    for session in sessions:
        for request in session.requests:
            if request.response is None:
                continue
            name = names.get(request.path)
            if name is None:
                name = names[request.path] = namer(request.path)
            into.setdefault((request.method, name), []).append(request.duration_ms)
    return into


def latency(durations: Durations) -> dict[tuple[str, str], RecordedLatency]:
    """Each endpoint's count, median and p95, and the whole recording's under ``TOTAL``."""
    out = {}
    for key, values in durations.items():
        ordered = sorted(values)
        out[key] = RecordedLatency(len(ordered), _rank(ordered, 0.5), _rank(ordered, 0.95))
    if durations:
        every = sorted(d for values in durations.values() for d in values)
        out[TOTAL] = RecordedLatency(len(every), _rank(every, 0.5), _rank(every, 0.95))
    return out


def recorded_latency(sessions: Iterable[Session], namer: StatsNamer) -> dict[tuple[str, str], RecordedLatency]:
    """(method, stats name) -> the recorded requests' count, median and p95 (request start to response end)."""
    return latency(add_durations(sessions, namer, {}))


def recorded_endpoints(sessions: Iterable[Session], namer: StatsNamer) -> set[tuple[str, str]]:
    """Every (method, stats name) of the recording."""
    names: dict[str, str] = {}
    found = set()
    for session in sessions:
        for request in session.requests:
            name = names.get(request.path)
            if name is None:
                name = names[request.path] = namer(request.path)
            found.add((request.method, name))
    return found
