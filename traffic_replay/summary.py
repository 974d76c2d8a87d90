"""The run summary: what ``replay run`` prints at the end and writes with ``--summary-json``.

Plain data, built by the replayer from Locust's stats; no locust import here so that
the shape is documented (``Summary.model_json_schema()``) and testable on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from rich.console import Console


class EndpointStats(BaseModel):
    method: str = Field(description="HTTP method; empty for the aggregated row.")
    name: str = Field(description="Endpoint template, e.g. /items/{id}.")
    requests: int
    failures: int
    median_ms: float
    p90_ms: float = 0.0
    p95_ms: float
    p99_ms: float
    avg_ms: float
    max_ms: float
    rps: float = Field(description="Requests per second over the whole run.")
    intended_median_ms: float | None = Field(
        None, description="Open models: latency from the intended send time (coordinated omission included).")
    intended_p95_ms: float | None = None
    intended_p99_ms: float | None = None
    recorded_requests: int | None = Field(
        None, description="Requests of this endpoint in the recording (same stats name as the replay's).")
    recorded_median_ms: float | None = Field(None, description="Median latency of this endpoint when it was recorded.")
    recorded_p95_ms: float | None = Field(None, description="95th percentile latency when it was recorded.")


class SessionStats(BaseModel):
    started: int = Field(description="Session replays begun.")
    completed: int = Field(description="Session replays that reached their last step with no failure.")
    failed: int = Field(description="Session replays that reached their last step with at least one failure.")
    median_s: float = Field(0.0, description="Median duration of the session replays that ended.")
    p95_s: float = Field(0.0, description="95th percentile duration of the session replays that ended.")


class SessionRow(BaseModel):
    """One recorded session's replays: the Sessions tab, the summary's per-session table."""

    name: str
    started: int
    completed: int
    failed: int
    median_s: float = 0.0
    p95_s: float = 0.0
    first_divergence: str | None = Field(
        None, description="Where the replay first differed, e.g. 'step 3: status 500, recorded 200'.")
    unsourced: int = Field(0, description="Recorded values sent again for want of a live one.")
    skipped: int = Field(0, description="Steps never sent (host safety, missing secrets).")


class Sample(BaseModel):
    """The run at one moment, for the charts: one every second or so."""

    t_s: float = Field(description="Seconds since the run started.")
    users: int
    rps: float = Field(description="Requests per second over the last few seconds.")
    failures_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    sessions_completed: int = Field(description="Sessions completed so far (cumulative).")
    sessions_failed: int = Field(description="Sessions failed so far (cumulative).")


class ThresholdVerdict(BaseModel):
    """One ``--fail-on`` expression judged at the end of the run."""

    expression: str = Field(description="As given, e.g. 'p95[/api/orders/{id}]<800ms'.")
    value: float | None = Field(
        description="The measured value, in the expression's unit; None when nothing was measured.")
    limit: float
    unit: str = Field(description="'ms', 's', '%' or '' (a count or a rate).")
    ok: bool
    detail: str = Field(description="One line for people: the value and by how much it broke or held.")


class FailureStats(BaseModel):
    method: str
    name: str
    error: str
    occurrences: int


class Divergence(BaseModel):
    session: str
    step: int = Field(description="1-based step of the session where the replay first differed.")
    method: str
    name: str
    what: str = Field(description="What differed: status, redirect target, content type or JSON keys.")
    occurrences: int


class UnsourcedValue(BaseModel):
    session: str
    step: int
    value: str = Field(description="A recorded value sent again because no live value was found for it.")
    occurrences: int


class WorkerStats(BaseModel):
    """A distributed run's workers (absent from a run in one process)."""

    took_part: int = Field(description="Workers that held the master's payload and ran users.")
    lost: int = Field(description="Of those, workers that went missing or left before the run ended.")
    requests: list[int] = Field(default_factory=list, description="Requests each of them sent, in the order they came.")


class SkippedFile(BaseModel):
    """A session file that ``--skip-bad`` left out of the run."""

    path: str
    problem: str = Field(description="What is wrong with it, as the error without --skip-bad says it.")


class Summary(BaseModel):
    """Per-endpoint results of one run, plus sessions and failures."""

    format_version: int = 1
    host: str | None
    duration_s: float
    endpoints: list[EndpointStats]
    total: EndpointStats
    sessions: SessionStats
    failures: list[FailureStats]
    skipped: dict[str, int] = Field(default_factory=dict, description="Steps never sent, by reason.")
    skipped_files: list[SkippedFile] = Field(
        default_factory=list, description="Bad session files left out of the run (--skip-bad); none without it.")
    divergences: list[Divergence] = Field(default_factory=list)
    unsourced: list[UnsourcedValue] = Field(default_factory=list)
    workers: WorkerStats | None = None
    session_rows: list[SessionRow] = Field(default_factory=list, description="Per recorded session, by name.")
    thresholds: list[ThresholdVerdict] = Field(default_factory=list, description="The --fail-on verdicts.")
    history: list[Sample] = Field(default_factory=list, description="The run over time, for the charts.")

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)


SESSION_ROWS_SHOWN = 20
"""Up to this many recorded sessions get a row each in the terminal (all of them are in the JSON and HTML)."""


def seconds(value: float) -> str:
    """A session's duration as people read it: 12 ms, 1.5 s, 95 s."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s" if value < 60 else f"{value:.0f} s"


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def render(summary: Summary, console: Console) -> None:
    """Print the summary as tables: endpoints, then sessions and failures."""
    from rich.table import Table  # only at the end of a run: keep it out of the replay process's start-up

    table = Table(title=f"Replay of {summary.host or 'target'} for {summary.duration_s:.1f}s", title_justify="left")
    intended = summary.total.intended_p95_ms is not None
    recorded = any(e.recorded_p95_ms is not None for e in summary.endpoints)
    columns = ["method", "endpoint", "requests", "failures", "median ms", "p95 ms", "req/s"]
    if intended:
        columns += ["intended median", "intended p95"]
    if recorded:
        columns += ["recorded median", "recorded p95", "p95 vs recorded"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "endpoint") else "right")

    def cells(row: EndpointStats) -> list[str]:
        out = [row.method, row.name, str(row.requests), str(row.failures), _ms(row.median_ms), _ms(row.p95_ms),
               f"{row.rps:.1f}"]
        if intended:
            out += [_ms(row.intended_median_ms or 0.0), _ms(row.intended_p95_ms or 0.0)]
        if recorded:
            if row.recorded_p95_ms is None or row.recorded_median_ms is None:
                out += ["", "", ""]
            else:
                ratio = f"{row.p95_ms / row.recorded_p95_ms:.1f}x" if row.recorded_p95_ms > 0 and row.requests else ""
                out += [_ms(row.recorded_median_ms), _ms(row.recorded_p95_ms), ratio]
        return out
    for row in summary.endpoints:
        table.add_row(*cells(row))
    table.add_section()
    table.add_row(*cells(summary.total))
    console.print(table)
    s = summary.sessions
    console.print(f"sessions: {s.started} started, {s.completed} completed, {s.failed} failed;"
                  f" duration median {seconds(s.median_s)}, p95 {seconds(s.p95_s)}")
    if 1 < len(summary.session_rows) <= SESSION_ROWS_SHOWN:
        table = Table(title="Sessions", title_justify="left")
        for column in ("session", "started", "completed", "failed", "median", "p95", "first divergence"):
            table.add_column(column, justify="left" if column in ("session", "first divergence") else "right")
        for r in summary.session_rows:
            table.add_row(r.name, str(r.started), str(r.completed), str(r.failed), seconds(r.median_s),
                          seconds(r.p95_s), r.first_divergence or "")
        console.print(table)
    if summary.workers is not None:
        w = summary.workers
        console.print(f"workers: {w.took_part} took part, {w.lost} lost; requests by worker: "
                      + ", ".join(str(n) for n in w.requests))
    if summary.skipped_files:
        names = ", ".join(Path(f.path).name for f in summary.skipped_files[:3])
        more = f" and {len(summary.skipped_files) - 3} more" if len(summary.skipped_files) > 3 else ""
        console.print(f"session files skipped as bad (--skip-bad): {len(summary.skipped_files)} ({names}{more}),"
                      " not replayed", highlight=False, markup=False)
    if summary.skipped:
        console.print("skipped, never sent: " + ", ".join(f"{n} × {r}" for r, n in summary.skipped.items()))
    if summary.divergences:
        table = Table(title="Divergences from the recording (first per session)", title_justify="left")
        for column in ("session", "step", "request", "what differs", "count"):
            table.add_column(column, justify="right" if column in ("step", "count") else "left")
        for d in summary.divergences:
            table.add_row(d.session, str(d.step), f"{d.method} {d.name}", d.what, str(d.occurrences))
        console.print(table)
    for u in summary.unsourced:
        console.print(f"recorded value sent again without a live source: session {u.session!r} step {u.step}:"
                      f" {u.value[:40]} ({u.occurrences}×)", highlight=False, markup=False)
    if summary.failures:
        failures = Table(title="Failures", title_justify="left")
        for column in ("method", "endpoint", "error", "count"):
            failures.add_column(column, justify="right" if column == "count" else "left")
        for f in summary.failures:
            failures.add_row(f.method, f.name, f.error, str(f.occurrences))
        console.print(failures)
