"""Build the run summary from Locust's own statistics (master or local runner)."""

from __future__ import annotations

from locust.env import Environment
from locust.stats import StatsEntry

from traffic_replay.summary import EndpointStats, FailureStats, SessionStats, Summary


class SessionCounts:
    """Session replays begun and ended, in this process (a worker reports its deltas)."""

    __slots__ = ("started", "completed", "failed")

    def __init__(self) -> None:
        self.started = self.completed = self.failed = 0

    def take(self) -> dict[str, int]:
        """The counts so far, reset to zero: what a worker sends with each report."""
        counts = {"started": self.started, "completed": self.completed, "failed": self.failed}
        self.started = self.completed = self.failed = 0
        return counts

    def add(self, counts: dict[str, int]) -> None:
        self.started += counts.get("started", 0)
        self.completed += counts.get("completed", 0)
        self.failed += counts.get("failed", 0)


def _endpoint(entry: StatsEntry, duration: float) -> EndpointStats:
    return EndpointStats(
        method=entry.method or "",
        name=entry.name,
        requests=entry.num_requests,
        failures=entry.num_failures,
        median_ms=entry.median_response_time or 0.0,
        p95_ms=entry.get_response_time_percentile(0.95) or 0.0,
        p99_ms=entry.get_response_time_percentile(0.99) or 0.0,
        avg_ms=entry.avg_response_time,
        max_ms=entry.max_response_time or 0.0,
        rps=entry.num_requests / duration if duration > 0 else 0.0,
    )


def build_summary(environment: Environment, sessions: SessionCounts) -> Summary:
    stats = environment.stats
    total = stats.total
    duration = max((total.last_request_timestamp or total.start_time) - total.start_time, 0.0)
    endpoints = sorted(stats.entries.values(), key=lambda e: (e.name, e.method or ""))
    return Summary(
        host=environment.host,
        duration_s=round(duration, 3),
        endpoints=[_endpoint(e, duration) for e in endpoints],
        total=_endpoint(total, duration).model_copy(update={"name": "Aggregated"}),
        sessions=SessionStats(started=sessions.started, completed=sessions.completed, failed=sessions.failed),
        failures=[FailureStats(method=e.method or "", name=e.name, error=str(e.error), occurrences=e.occurrences)
                  for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)],
    )
