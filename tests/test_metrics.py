"""replayer/metrics.py: a real run's Prometheus endpoint, scraped over HTTP during the run and after its summary."""

from __future__ import annotations

import math
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from traffic_replay import __version__
from traffic_replay.format import load_recordings, write_session
from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from factories import make_request, make_session
from processes import REPO_ROOT, free_port, target_log
from scraping import BUNDLED, MetricsRun, by_label, samples, wait_for_json

LINGER_S = 8
BUNDLED_PORT = load_recordings(BUNDLED)[0].requests[0].port  # recorded requests to it go to --host


def _recordings(tmp_path: Path) -> Path:
    """The bundled sessions, one that fails at its only step (a status the recording did not have),
    and one whose host is not the target's (its step is skipped)."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for f in BUNDLED.glob("*.json"):
        shutil.copy(f, recordings)
    write_session(make_session([make_request("/account", status=200, port=BUNDLED_PORT)], id="nologin",
                               name="no login"), recordings)
    write_session(make_session([make_request("/", host="elsewhere.example")], id="elsewhere", name="elsewhere"),
                  recordings)
    return recordings


def _total(families: dict[str, Any], name: str) -> float:
    return sum(s.value for s in samples(families, name))


@pytest.mark.timeout(90)
def test_the_last_scrape_holds_the_summary_figures(demo_target: str, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    run = MetricsRun(demo_target, "-u", "4", "-r", "4", "-t", "6s", "--speed", "0", "--prometheus-port", "0",
                     "--prometheus-linger", str(LINGER_S), "--summary-json", str(summary_file),
                     recordings=_recordings(tmp_path))
    try:
        # Port 0: the bound port is logged, on loopback.
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", run.url), run.url
        # During the run: the counters move.
        deadline = time.monotonic() + 20
        while True:
            live = run.scrape()
            if _total(live, "replay_requests_total") > 0 and _total(live, "replay_sessions_started_total") > 0:
                break
            assert time.monotonic() < deadline, run.output[-3000:]
            time.sleep(0.2)
        assert not summary_file.exists()
        assert by_label(live, "replay_run_state", "state")[("running",)] == 1
        assert by_label(live, "replay_users")[()] == 4
        assert by_label(live, "replay_workers")[()] == 0  # a local run

        summary = wait_for_json(summary_file, run, timeout=30)
        final = run.scrape()  # the run lingers: the summary is written, the endpoint still up
        written = time.monotonic()
        assert "metrics stay up 8 s for a last scrape" in run.output
        code = run.wait(LINGER_S + 20)
        lingered = time.monotonic() - written
    finally:
        run.stop()
    assert code == 1, run.output[-3000:]  # the failing session's requests failed
    assert lingered >= LINGER_S - 1.5, lingered
    with pytest.raises(httpx.ConnectError):
        httpx.get(run.url, timeout=2, trust_env=False)

    # Requests and failures per endpoint, and in all: exactly the summary's.
    endpoints = {(e["method"], e["name"]): e for e in summary["endpoints"]}
    assert by_label(final, "replay_requests_total", "method", "name") == {
        k: e["requests"] for k, e in endpoints.items()}
    assert by_label(final, "replay_request_failures_total", "method", "name") == {
        k: e["failures"] for k, e in endpoints.items()}
    assert _total(final, "replay_requests_total") == summary["total"]["requests"] > 0
    assert _total(final, "replay_request_failures_total") == summary["total"]["failures"] > 0
    # The histogram: a count per endpoint that is its requests, cumulative buckets, and the summed time.
    counts = by_label(final, "replay_request_duration_seconds_count", "method", "name")
    assert counts == {k: e["requests"] for k, e in endpoints.items()}
    sums = by_label(final, "replay_request_duration_seconds_sum", "method", "name")
    for key, e in endpoints.items():
        assert math.isclose(sums[key], e["avg_ms"] * e["requests"] / 1000, rel_tol=1e-6), key
        buckets = [(float(s.labels["le"]), s.value) for s in samples(final, "replay_request_duration_seconds_bucket")
                   if (s.labels["method"], s.labels["name"]) == key]
        assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1] == (math.inf, e["requests"])
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False)), buckets
        # Locust's median (rounded ms) lies at or under the first bound that holds more than half the count.
        half = next(le for le, n in buckets if n > e["requests"] / 2)
        assert e["median_ms"] / 1000 <= half, (key, e["median_ms"], buckets)

    # Sessions, per session and in all.
    rows = {r["name"]: r for r in summary["session_rows"]}
    for what in ("started", "completed", "failed", "unsourced"):
        metric = f"replay_{what}_total" if what == "unsourced" else f"replay_sessions_{what}_total"
        assert by_label(final, metric, "session") == {(n,): r[what] for n, r in rows.items()}, what
    for what in ("started", "completed", "failed"):
        assert _total(final, f"replay_sessions_{what}_total") == summary["sessions"][what]
    assert summary["sessions"]["failed"] > 0 and summary["sessions"]["completed"] > 0
    divergences = {(d["session"],): d["occurrences"] for d in summary["divergences"]}
    assert divergences[("no login",)] > 0
    assert {k: v for k, v in by_label(final, "replay_divergences_total", "session").items() if v} == divergences
    skipped = by_label(final, "replay_skipped_steps_total", "reason")
    assert skipped == {(r,): n for r, n in summary["skipped"].items()} and sum(skipped.values()) > 0, skipped
    assert by_label(final, "replay_run_info", "host", "version") == {(demo_target, __version__): 1}
    assert by_label(final, "replay_run_state", "state")[("stopped",)] == 1
    assert by_label(final, "replay_users")[()] == 0


@pytest.mark.timeout(90)
def test_a_master_serves_its_workers_merged_figures(demo_target: str, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    run = MetricsRun(demo_target, "-u", "4", "-r", "4", "-t", "5s", "--speed", "0", "--processes", "2",
                     "--prometheus-port", "0", "--prometheus-linger", "5", "--summary-json", str(summary_file))
    try:
        deadline = time.monotonic() + 30
        while not _total(live := run.scrape(), "replay_requests_total"):
            assert time.monotonic() < deadline, run.output[-3000:]
            time.sleep(0.2)
        assert by_label(live, "replay_workers")[()] == 2
        summary = wait_for_json(summary_file, run, timeout=30)
        final = run.scrape()
        assert run.wait(30) == 0, run.output[-3000:]
    finally:
        run.stop()
    assert summary["workers"]["took_part"] == 2
    assert _total(final, "replay_requests_total") == summary["total"]["requests"] == sum(summary["workers"]["requests"])
    endpoints = {(e["method"], e["name"]): e["requests"] for e in summary["endpoints"]}
    assert by_label(final, "replay_request_duration_seconds_count", "method", "name") == endpoints
    for what in ("started", "completed", "failed"):
        assert _total(final, f"replay_sessions_{what}_total") == summary["sessions"][what], what


def _listening(pid: int, port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


@pytest.mark.timeout(60)
def test_the_endpoint_binds_loopback_by_default(demo_target: str) -> None:
    port = free_port()
    run = MetricsRun(demo_target, "-u", "1", "-t", "3s", "--prometheus-port", str(port))
    try:
        assert run.url == f"http://127.0.0.1:{port}/metrics"
        assert _listening(run.proc.pid, port) == {"127.0.0.1"}
        assert run.scrape()["replay_requests"].type == "counter"
        assert run.wait(30) == 0, run.output[-3000:]
    finally:
        run.stop()
    assert "metrics stay up" not in run.output  # no linger unless asked


@pytest.mark.timeout(60)
def test_sigterm_ends_the_linger_with_the_runs_exit_code(demo_target: str) -> None:
    """``docker stop`` while the endpoint lingers: out at once, the summary printed once, the run's exit code."""
    run = MetricsRun(demo_target, "-u", "1", "-t", "2s", "--prometheus-port", "0", "--prometheus-linger", "60")
    try:
        deadline = time.monotonic() + 30
        while "metrics stay up 60 s" not in run.output:
            assert time.monotonic() < deadline and run.proc.poll() is None, run.output[-3000:]
            time.sleep(0.1)
        run.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert run.wait(10) == 0, run.output[-3000:]
        assert time.monotonic() - stopped < 5
    finally:
        run.stop()
    assert run.output.count("sessions:") == 1, run.output[-3000:]


@pytest.mark.timeout(60)
def test_a_taken_port_is_one_line_and_exit_2_before_the_run(demo_target: str) -> None:
    import subprocess

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(BUNDLED), "--host", demo_target,
                               "--headless", "-t", "5s", "--no-check", "--prometheus-port", str(port)],
                              capture_output=True, text=True, timeout=45, cwd=REPO_ROOT,
                              env={**_env(), **read_env_file(BUNDLED / DEMO_SECRETS)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --prometheus-port {port} on 127.0.0.1: address in use"], proc.stderr
    assert "Traceback" not in proc.stderr and "Ramping" not in proc.stderr, proc.stderr
    assert target_log(demo_target) == []  # nothing was sent


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
