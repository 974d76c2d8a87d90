"""Build the run summary from Locust's own statistics and the run log (master or local)."""

from __future__ import annotations

import logging
from pathlib import Path

from locust.env import Environment
from locust.stats import StatsEntry

from replayer.divergence import RunLog, percentile
from traffic_replay.summary import (
    Divergence,
    EndpointStats,
    FailureStats,
    SessionStats,
    Summary,
    UnsourcedValue,
    WorkerStats,
    render,
)


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


def _intended(row: EndpointStats, histogram: dict[int, int] | None) -> EndpointStats:
    if not histogram:
        return row
    return row.model_copy(update={"intended_median_ms": percentile(histogram, 0.5),
                                  "intended_p95_ms": percentile(histogram, 0.95),
                                  "intended_p99_ms": percentile(histogram, 0.99)})


SESSION = "SESSION"
"""Request type of the one event per ended session: Locust's tables and web UI show sessions
(count, failures, durations) beside the requests, as locust-plugins' transactions do."""


def build_summary(environment: Environment, log: RunLog, workers: WorkerStats | None = None) -> Summary:
    stats = environment.stats
    # Totals over the requests alone: the session rows would count every session twice.
    total = StatsEntry(stats, "Aggregated", "", use_response_times_cache=False)
    for entry in stats.entries.values():
        if entry.method != SESSION:
            total.extend(entry)
    total.start_time = stats.total.start_time
    duration = max((total.last_request_timestamp or total.start_time) - total.start_time, 0.0)
    endpoints = sorted((e for e in stats.entries.values() if e.method != SESSION), key=lambda e: (e.name, e.method))
    sessions = [e for e in stats.entries.values() if e.method == SESSION]
    whole = StatsEntry(stats, "sessions", SESSION, use_response_times_cache=False)
    for entry in sessions:
        whole.extend(entry)
    all_late: dict[int, int] = {}
    for histogram in log.late.values():
        for ms, n in histogram.items():
            all_late[ms] = all_late.get(ms, 0) + n
    return Summary(
        host=environment.host,
        duration_s=round(duration, 3),
        endpoints=[_intended(_endpoint(e, duration), log.late.get(f"{e.method} {e.name}")) for e in endpoints],
        total=_intended(_endpoint(total, duration).model_copy(update={"name": "Aggregated"}), all_late),
        sessions=SessionStats(started=log.started, completed=log.completed, failed=log.failed,
                              median_s=(whole.median_response_time or 0) / 1000,
                              p95_s=(whole.get_response_time_percentile(0.95) or 0) / 1000),
        failures=[FailureStats(method=e.method or "", name=e.name, error=str(e.error), occurrences=e.occurrences)
                  for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences) if e.method != SESSION],
        skipped=dict(sorted(log.skipped.items())),
        divergences=[Divergence(session=session, step=step, method=method, name=name, what=what, occurrences=count)
                     for session, (step, method, name, what, count) in sorted(log.divergences.items())],
        unsourced=[UnsourcedValue(session=session, step=step, value=value, occurrences=count)
                   for (session, step, value), count in sorted(log.unsourced.items())],
        workers=workers,
    )


def report(environment: Environment, log: RunLog, summary_json: Path | None,
           workers: WorkerStats | None = None) -> None:
    """Print the summary (instead of Locust's own end tables) and write it as JSON if asked."""
    from rich.console import Console

    summary = build_summary(environment, log, workers)
    render(summary, Console(width=140))
    if summary_json is not None:
        summary.write(summary_json)
    # Our summary replaces Locust's end-of-run tables, which would repeat it.
    logging.getLogger("locust.stats_logger").disabled = True
