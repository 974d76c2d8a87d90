"""The run log: what the request stats do not hold. Sessions, skipped steps, divergences, unsourced values.

Sessions are not requests, so they are kept here, typed, and not as rows of Locust's
request stats (where the web UI, CSV, HTML report and ``stats.total`` would count them as
requests). Per process, cheap to update from the hot loop: a few attribute and dict
operations per event, and the shape of a response is compared only until the session's
first divergence is known. A worker sends what it gathered since its last report with
each report to the master (``take``), which merges it (``add``); the wire form is a
msgspec struct, so a malformed report is refused at the edge, not half-merged.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from replayer.steps import Expected, Step
from traffic_replay.naming import endpoint_template

SHAPE_CHECKS_PER_SESSION = 500
"""Responses per session (and process) whose redirect, content type and JSON keys are compared."""


def rounded_ms(ms: float) -> int:
    """Two significant digits, as Locust rounds its own response times: histograms stay small and mergeable."""
    return round(ms) if ms < 100 else int(round(ms, -1)) if ms < 1000 else int(round(ms, -2))


class Divergence:
    """The earliest step of a session whose response differed from the recorded one."""

    __slots__ = ("step", "method", "name", "what", "occurrences")

    def __init__(self, step: int, method: str, name: str, what: str, occurrences: int = 1) -> None:
        self.step, self.method, self.name, self.what, self.occurrences = step, method, name, what, occurrences

    def merge(self, step: int, method: str, name: str, what: str, occurrences: int) -> Divergence:
        """The earlier of the two (counts add up when both are at the same step)."""
        if step < self.step:
            return Divergence(step, method, name, what, occurrences)
        if step == self.step:
            self.occurrences += occurrences
        return self


class SessionTally:
    """One recorded session's replays in this process (or, on the master, in the whole run)."""

    __slots__ = ("started", "completed", "failed", "durations", "divergence", "unsourced", "skipped", "checks")

    def __init__(self) -> None:
        self.started = self.completed = self.failed = 0
        self.durations: dict[int, int] = {}
        """Durations of the replays that ended, rounded ms -> count."""
        self.divergence: Divergence | None = None
        self.unsourced = 0
        """Recorded values sent again for want of a live one."""
        self.skipped = 0
        """Steps never sent."""
        self.checks = 0
        """Responses whose shape was compared (per process: never reported)."""

    def ended(self, seconds: float, failed: bool) -> None:
        if failed:
            self.failed += 1
        else:
            self.completed += 1
        key = rounded_ms(seconds * 1000)
        self.durations[key] = self.durations.get(key, 0) + 1


# The wire form, worker to master: positional where it repeats per session.
class _SessionReport(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    started: int
    completed: int
    failed: int
    durations: list[tuple[int, int]]
    divergence: tuple[int, str, str, str, int] | None
    unsourced: int
    skipped: int


class _Report(msgspec.Struct, forbid_unknown_fields=True):
    sessions: dict[str, _SessionReport] = {}
    skipped: dict[str, int] = {}
    unsourced: list[tuple[str, int, str, int]] = []
    late: dict[str, list[tuple[int, int]]] = {}


class RunLog:
    """Per session tallies, skipped steps by reason, unsourced values, intended latencies."""

    __slots__ = ("sessions", "skipped", "unsourced", "late")

    def __init__(self) -> None:
        self.sessions: dict[str, SessionTally] = {}
        self.skipped: dict[str, int] = {}
        self.unsourced: dict[tuple[str, int, str], int] = {}
        """(session name, step, value) -> occurrences."""
        self.late: dict[str, dict[int, int]] = {}
        """"METHOD name" -> {latency from the intended send time, rounded ms: count} (open models)."""

    def session(self, name: str) -> SessionTally:
        tally = self.sessions.get(name)
        if tally is None:
            tally = self.sessions[name] = SessionTally()
        return tally

    # Totals over every session: the summary, the progress line, the metrics.
    @property
    def started(self) -> int:
        return sum(t.started for t in self.sessions.values())

    @property
    def completed(self) -> int:
        return sum(t.completed for t in self.sessions.values())

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.sessions.values())

    def divergences(self) -> int:
        """Responses that differed at their session's first divergence."""
        return sum(t.divergence.occurrences for t in self.sessions.values() if t.divergence is not None)

    def durations(self) -> dict[int, int]:
        """Every ended session replay's duration, rounded ms -> count."""
        merged: dict[int, int] = {}
        for tally in self.sessions.values():
            for ms, n in tally.durations.items():
                merged[ms] = merged.get(ms, 0) + n
        return merged

    # Events from the hot loop.
    def intended(self, method: str, name: str, ms: float) -> None:
        histogram = self.late.setdefault(f"{method} {name}", {})
        key = rounded_ms(ms)
        histogram[key] = histogram.get(key, 0) + 1

    def skip(self, tally: SessionTally, reason: str) -> None:
        tally.skipped += 1
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def sent_unsourced(self, tally: SessionTally, session: str, step: int, value: str) -> None:
        tally.unsourced += 1
        key = (session, step, value)
        self.unsourced[key] = self.unsourced.get(key, 0) + 1

    @staticmethod
    def diverged(tally: SessionTally, step: Step, what: str) -> None:
        known = tally.divergence
        tally.divergence = (Divergence(step.index, step.method, step.name, what) if known is None
                            else known.merge(step.index, step.method, step.name, what, 1))

    def check(self, tally: SessionTally, step: Step, status: int, header: Any, content: bytes) -> None:
        """Record how this response differs from the recorded one, if it does."""
        expected: Expected | None = step.recorded
        if expected is None:
            return
        known = tally.divergence
        if known is not None and known.step < step.index:
            return
        if status != expected.status:
            self.diverged(tally, step, f"status {status}, recorded {expected.status}")
            return
        # Redirects, content types and JSON keys are compared on a session's first responses only:
        # a replay that matched then keeps matching, and the lookups would tax every request.
        if tally.checks >= SHAPE_CHECKS_PER_SESSION:
            return
        tally.checks += 1
        location = header("location")
        if (endpoint_template(location) if location else None) != expected.location:
            self.diverged(tally, step, f"redirect to {location}, recorded {expected.location}")
            return
        ctype = (header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype != expected.content_type:
            self.diverged(tally, step, f"content type {ctype or 'none'}, recorded {expected.content_type}")
            return
        if expected.json_keys is not None:
            try:
                document = orjson.loads(content)
            except orjson.JSONDecodeError:
                document = None
            keys = frozenset(document) if isinstance(document, dict) else frozenset()
            if keys != expected.json_keys:
                missing, extra = sorted(expected.json_keys - keys), sorted(keys - expected.json_keys)
                self.diverged(tally, step, f"JSON keys differ: missing {missing}, extra {extra}")

    # Worker to master.
    def take(self) -> dict[str, Any]:
        """Everything gathered since the last call, as plain data, and a fresh start: a worker's report."""
        sessions = {}
        for name, t in self.sessions.items():
            d = t.divergence
            sessions[name] = _SessionReport(
                t.started, t.completed, t.failed, list(t.durations.items()),
                None if d is None else (d.step, d.method, d.name, d.what, d.occurrences), t.unsourced, t.skipped)
            # The comparison budget stays per process; the rest starts again from nothing.
            t.started = t.completed = t.failed = t.unsourced = t.skipped = 0
            t.durations, t.divergence = {}, None if d is None else Divergence(d.step, d.method, d.name, d.what, 0)
        report = _Report(sessions=sessions, skipped=self.skipped,
                         unsourced=[(*k, v) for k, v in self.unsourced.items()],
                         late={name: list(h.items()) for name, h in self.late.items()})
        self.skipped, self.unsourced, self.late = {}, {}, {}
        return msgspec.to_builtins(report)  # type: ignore[no-any-return]

    def add(self, data: dict[str, Any]) -> None:
        """Merge a worker's report (``take``)."""
        report = msgspec.convert(data, _Report)
        for name, s in report.sessions.items():
            tally = self.session(name)
            tally.started += s.started
            tally.completed += s.completed
            tally.failed += s.failed
            tally.unsourced += s.unsourced
            tally.skipped += s.skipped
            for ms, n in s.durations:
                tally.durations[ms] = tally.durations.get(ms, 0) + n
            if s.divergence is not None and s.divergence[4]:
                tally.divergence = (Divergence(*s.divergence) if tally.divergence is None
                                    else tally.divergence.merge(*s.divergence))
        for reason, count in report.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        for session, step, value, count in report.unsourced:
            key = (session, step, value)
            self.unsourced[key] = self.unsourced.get(key, 0) + count
        for name, pairs in report.late.items():
            histogram = self.late.setdefault(name, {})
            for ms, count in pairs:
                histogram[ms] = histogram.get(ms, 0) + count


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The ``fraction`` percentile of a {value: count} histogram."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    rank, seen = fraction * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))
