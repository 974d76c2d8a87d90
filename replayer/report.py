"""Build the run summary from Locust's own statistics and the run log (master or local)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from locust.env import Environment
from locust.stats import StatsEntry

from replayer.runlog import RunLog, percentile
from traffic_replay.payload import Payload
from traffic_replay.recorded import RecordedLatency
from traffic_replay.settings import Settings
from traffic_replay.summary import (
    Divergence,
    EndpointStats,
    FailureStats,
    Sample,
    SessionRow,
    SessionStats,
    SkippedFile,
    Summary,
    UnsourcedValue,
    WorkerStats,
    render,
)
from traffic_replay.thresholds import EXIT_CODE, judge_all


def _endpoint(entry: StatsEntry, duration: float) -> EndpointStats:
    return EndpointStats(
        method=entry.method or "",
        name=entry.name,
        requests=entry.num_requests,
        failures=entry.num_failures,
        median_ms=entry.median_response_time or 0.0,
        p90_ms=entry.get_response_time_percentile(0.90) or 0.0,
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


def session_rows(log: RunLog) -> list[SessionRow]:
    """One row per recorded session: the Sessions tab and the summary."""
    rows = []
    for name, t in sorted(log.sessions.items()):
        d = t.divergence
        rows.append(SessionRow(
            name=name, started=t.started, completed=t.completed, failed=t.failed,
            median_s=percentile(t.durations, 0.5) / 1000, p95_s=percentile(t.durations, 0.95) / 1000,
            first_divergence=None if d is None else f"step {d.step}: {d.what}",
            unsourced=t.unsourced, skipped=t.skipped))
    return rows


def build_summary(environment: Environment, log: RunLog, workers: WorkerStats | None = None) -> Summary:
    stats = environment.stats
    total = stats.total
    duration = max((total.last_request_timestamp or total.start_time) - total.start_time, 0.0)
    endpoints = sorted(stats.entries.values(), key=lambda e: (e.name, e.method))
    all_late: dict[int, int] = {}
    for histogram in log.late.values():
        for ms, n in histogram.items():
            all_late[ms] = all_late.get(ms, 0) + n
    durations = log.durations()
    divergences = [(name, t.divergence) for name, t in sorted(log.sessions.items()) if t.divergence is not None]
    return Summary(
        host=environment.host,
        duration_s=round(duration, 3),
        endpoints=[_intended(_endpoint(e, duration), log.late.get(f"{e.method} {e.name}")) for e in endpoints],
        total=_intended(_endpoint(total, duration).model_copy(update={"name": "Aggregated"}), all_late),
        sessions=SessionStats(started=log.started, completed=log.completed, failed=log.failed,
                              median_s=percentile(durations, 0.5) / 1000, p95_s=percentile(durations, 0.95) / 1000),
        failures=[FailureStats(method=e.method or "", name=e.name, error=str(e.error), occurrences=e.occurrences)
                  for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)],
        skipped=dict(sorted(log.skipped.items())),
        divergences=[Divergence(session=name, step=d.step, method=d.method, name=d.name, what=d.what,
                                occurrences=d.occurrences) for name, d in divergences if d.occurrences],
        unsourced=[UnsourcedValue(session=session, step=step, value=value, occurrences=count)
                   for (session, step, value), count in sorted(log.unsourced.items())],
        workers=workers,
        session_rows=session_rows(log),
    )


def with_recorded(summary: Summary, recorded: Mapping[tuple[str, str], RecordedLatency]) -> Summary:
    """Each endpoint row with the recording's own latency beside it (same stats name, same method)."""
    def row(e: EndpointStats) -> EndpointStats:
        r = recorded.get((e.method, e.name))
        if r is None:
            return e
        return e.model_copy(update={"recorded_requests": r.requests, "recorded_median_ms": r.median_ms,
                                    "recorded_p95_ms": r.p95_ms})
    return summary.model_copy(update={"endpoints": [row(e) for e in summary.endpoints], "total": row(summary.total)})


def report(environment: Environment, log: RunLog, settings: Settings, payload: Payload,
           workers: WorkerStats | None, history: list[Sample]) -> None:
    """At the end of the run: the summary printed (instead of Locust's own end tables), the thresholds
    judged and the exit code set by them, and the summary written as JSON and HTML if asked."""
    from rich.console import Console

    workload = payload.open()
    summary = with_recorded(build_summary(environment, log, workers), workload.latency).model_copy(
        update={"skipped_files": [SkippedFile(path=str(e.path), problem=e.detail) for e in workload.skipped]})
    summary = summary.model_copy(update={"history": history, "thresholds": judge_all(settings.fail_on, summary)})
    console = Console(width=140)
    render(summary, console)
    if summary.thresholds:
        broke = [v for v in summary.thresholds if not v.ok]
        for verdict in summary.thresholds:
            console.print(verdict.detail, style=None if verdict.ok else "bold red", highlight=False, markup=False)
        runner = environment.runner
        if broke:
            console.print(f"{len(broke)} of {len(summary.thresholds)} thresholds broke: exit code {EXIT_CODE}",
                          style="bold red", highlight=False)
            environment.process_exit_code = EXIT_CODE
        elif runner is not None and not runner.exceptions:
            # The thresholds are the gate: failed requests within them do not fail the run.
            environment.process_exit_code = 0
    if settings.summary_json is not None:
        summary.write(settings.summary_json)
    if settings.html is not None:
        from traffic_replay.htmlreport import write_html

        write_html(summary, settings.html)
    # Our summary replaces Locust's end-of-run tables, which would repeat it.
    logging.getLogger("locust.stats_logger").disabled = True
