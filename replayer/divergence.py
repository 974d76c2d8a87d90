"""What a run saw that the recording did not: the data behind the divergence report.

Per process, cheap to update from the hot loop: a few dict operations per event, and the
shape of a response is compared only until the session's first divergence is known. A
worker sends what it gathered with each report to the master, which merges it.
"""

from __future__ import annotations

from typing import Any

import orjson

from replayer.prepared import Expected, Step
from traffic_replay.naming import endpoint_template

# Responses per session (and process) whose redirect, content type and JSON keys are compared.
SHAPE_CHECKS_PER_SESSION = 500


class RunLog:
    """Sessions started and ended, skipped steps, first divergences and unsourced values."""

    __slots__ = ("started", "completed", "failed", "skipped", "divergences", "unsourced", "shape_checks",
                 "late")

    def __init__(self) -> None:
        self.started = self.completed = self.failed = 0
        self.skipped: dict[str, int] = {}
        # session name -> [step, method, endpoint, what differs, occurrences]
        self.divergences: dict[str, list[Any]] = {}
        # (session name, step, value) -> occurrences
        self.unsourced: dict[tuple[str, int, str], int] = {}
        self.shape_checks: dict[str, int] = {}
        # "METHOD name" -> {latency from the intended send time, rounded ms: count} (open models)
        self.late: dict[str, dict[int, int]] = {}

    def intended(self, method: str, name: str, ms: float) -> None:
        histogram = self.late.setdefault(f"{method} {name}", {})
        # Two significant digits, as Locust rounds its own response times: small, mergeable.
        key = round(ms) if ms < 100 else int(round(ms, -1)) if ms < 1000 else int(round(ms, -2))
        histogram[key] = histogram.get(key, 0) + 1

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def diverged(self, session: str, step: Step, what: str) -> None:
        known = self.divergences.get(session)
        if known is None or step.index < known[0]:
            self.divergences[session] = [step.index, step.method, step.name, what, 1]
        elif step.index == known[0]:
            known[4] += 1

    def sent_unsourced(self, session: str, step: int, value: str) -> None:
        key = (session, step, value)
        self.unsourced[key] = self.unsourced.get(key, 0) + 1

    def check(self, session: str, step: Step, status: int, header: Any, content: bytes) -> None:
        """Record how this response differs from the recorded one, if it does."""
        expected: Expected | None = step.recorded
        if expected is None:
            return
        known = self.divergences.get(session)
        if known is not None and known[0] < step.index:
            return
        if status != expected.status:
            self.diverged(session, step, f"status {status}, recorded {expected.status}")
            return
        # Redirects, content types and JSON keys are compared on a session's first responses only:
        # a replay that matched then keeps matching, and the lookups would tax every request.
        checks = self.shape_checks.get(session, 0)
        if checks >= SHAPE_CHECKS_PER_SESSION:
            return
        self.shape_checks[session] = checks + 1
        location = header("location")
        if (endpoint_template(location) if location else None) != expected.location:
            self.diverged(session, step, f"redirect to {location}, recorded {expected.location}")
            return
        ctype = (header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype != expected.content_type:
            self.diverged(session, step, f"content type {ctype or 'none'}, recorded {expected.content_type}")
            return
        if expected.json_keys is not None:
            try:
                document = orjson.loads(content)
            except orjson.JSONDecodeError:
                document = None
            keys = frozenset(document) if isinstance(document, dict) else frozenset()
            if keys != expected.json_keys:
                missing, extra = sorted(expected.json_keys - keys), sorted(keys - expected.json_keys)
                self.diverged(session, step, f"JSON keys differ: missing {missing}, extra {extra}")

    def take(self) -> dict[str, Any]:
        """Everything gathered so far, and a fresh start: what a worker sends with each report."""
        data = {"started": self.started, "completed": self.completed, "failed": self.failed,
                "skipped": self.skipped, "divergences": self.divergences,
                "unsourced": [[*k, v] for k, v in self.unsourced.items()],
                "late": {name: list(h.items()) for name, h in self.late.items()}}
        self.started = self.completed = self.failed = 0
        self.skipped, self.divergences, self.unsourced, self.late = {}, {}, {}, {}
        return data

    def add(self, data: dict[str, Any]) -> None:
        self.started += data.get("started", 0)
        self.completed += data.get("completed", 0)
        self.failed += data.get("failed", 0)
        for reason, count in data.get("skipped", {}).items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        for session, (index, method, name, what, count) in data.get("divergences", {}).items():
            known = self.divergences.get(session)
            if known is None or index < known[0]:
                self.divergences[session] = [index, method, name, what, count]
            elif index == known[0]:
                known[4] += count
        for session, step, value, count in data.get("unsourced", []):
            key = (session, step, value)
            self.unsourced[key] = self.unsourced.get(key, 0) + count
        for name, pairs in data.get("late", {}).items():
            histogram = self.late.setdefault(name, {})
            for ms, count in pairs:
                histogram[int(ms)] = histogram.get(int(ms), 0) + count


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
