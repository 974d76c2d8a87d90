"""Build the run summary from Locust's own statistics and the run log (master or local)."""

from __future__ import annotations

from locust.env import Environment
from locust.stats import StatsEntry

from replayer.divergence import RunLog
from traffic_replay.summary import Divergence, EndpointStats, FailureStats, SessionStats, Summary, UnsourcedValue


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


def build_summary(environment: Environment, log: RunLog) -> Summary:
    stats = environment.stats
    total = stats.total
    duration = max((total.last_request_timestamp or total.start_time) - total.start_time, 0.0)
    endpoints = sorted(stats.entries.values(), key=lambda e: (e.name, e.method or ""))
    return Summary(
        host=environment.host,
        duration_s=round(duration, 3),
        endpoints=[_endpoint(e, duration) for e in endpoints],
        total=_endpoint(total, duration).model_copy(update={"name": "Aggregated"}),
        sessions=SessionStats(started=log.started, completed=log.completed, failed=log.failed),
        failures=[FailureStats(method=e.method or "", name=e.name, error=str(e.error), occurrences=e.occurrences)
                  for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)],
        skipped=dict(sorted(log.skipped.items())),
        divergences=[Divergence(session=session, step=step, method=method, name=name, what=what, occurrences=count)
                     for session, (step, method, name, what, count) in sorted(log.divergences.items())],
        unsourced=[UnsourcedValue(session=session, step=step, value=value, occurrences=count)
                   for (session, step, value), count in sorted(log.unsourced.items())],
    )
