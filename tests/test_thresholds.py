"""``--fail-on``: thresholds judged on the summary, against a target with known latency and a known error rate.

The target delays ``/slow`` by 60 ms and fails every 5th ``/flaky`` with a 500 (exactly
20%); the recording says ``/slow`` took 10 ms. The summary's figures must be those, and the
thresholds pass and break as they should, with exit code 4 and one line per verdict.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from traffic_replay.format import write_session
from traffic_replay.summary import EndpointStats, SessionRow, SessionStats, Summary
from traffic_replay.thresholds import EXIT_CODE, judge, parse_threshold

from factories import make_request, make_session
from processes import REPO_ROOT

SLOW_S = 0.060
FLAKY_EVERY = 5


class _Shaped(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them
    flaky = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = 200
        if self.path.startswith("/slow"):
            time.sleep(SLOW_S)
        elif self.path.startswith("/flaky"):
            with self.lock:
                type(self).flaky += 1
                status = 500 if type(self).flaky % FLAKY_EVERY == 0 else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def shaped() -> Iterator[int]:
    _Shaped.flaky = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shaped)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def _recording(tmp_path: Path, port: int) -> Path:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(make_session([make_request("/fast", port=port, duration_ms=1.0),
                                make_request("/slow", port=port, duration_ms=10.0),
                                make_request("/flaky", port=port, duration_ms=2.0)], name="shaped"), directory)
    return directory


def _run(directory: Path, port: int, *args: str, seconds: int = 5,
         timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    summary = directory.parent / f"summary-{len(list(directory.parent.glob('summary-*')))}.json"
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(directory), "--host", f"http://127.0.0.1:{port}",
         "-u", "4", "-r", "4", "-t", f"{seconds}s", "--headless", "--speed", "0", "--no-check",
         "--summary-json", str(summary), *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return result, orjson.loads(summary.read_bytes()) if summary.exists() else {}


def _row(summary: dict[str, Any], name: str) -> dict[str, Any]:
    [row] = [e for e in summary["endpoints"] if e["name"] == name]
    return row


@pytest.mark.timeout(120)
def test_figures_are_the_targets_and_thresholds_pass_and_break_with_exit_code_4(
        shaped: int, tmp_path: Path) -> None:
    directory = _recording(tmp_path, shaped)
    held = ["p50[/slow]>=55ms", "p95[/slow]<2s", "errors[/flaky]>15%", "errors[/flaky]<0.25",
            "errors[GET /fast]==0", "sessions_started>=1", "unsourced==0"]
    result, summary = _run(directory, shaped, *[a for t in held for a in ("--fail-on", t)], seconds=11)
    # Requests failed (every 5th /flaky), yet every threshold held: the thresholds are the gate.
    assert summary["total"]["failures"] > 0
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    slow, flaky = _row(summary, "/slow"), _row(summary, "/flaky")
    assert SLOW_S * 1000 <= slow["median_ms"] < SLOW_S * 1000 + 40
    assert abs(100 * flaky["failures"] / flaky["requests"] - 100 / FLAKY_EVERY) <= 100 / flaky["requests"] + 0.5
    # The recording's own latency beside the replayed one, under the replay's stats name.
    assert (slow["recorded_requests"], slow["recorded_median_ms"], slow["recorded_p95_ms"]) == (1, 10.0, 10.0)
    assert [v["ok"] for v in summary["thresholds"]] == [True] * len(held)
    assert [v["expression"] for v in summary["thresholds"]] == held
    assert re.search(r"^ok p50\[/slow\]>=55ms: p50\[/slow\] = \d+ ms, over the limit of 55 ms", result.stdout, re.M)
    assert re.search(r"p95 vs recorded", result.stdout) and re.search(r"/slow .*\b[5-9]\.\dx", result.stdout)
    # No terminal: the progress is a plain log line, at most every 10 s.
    progress = re.findall(r"INFO/replayer\.watching: (0:1\d/0:11 +users \d+ .*req/s.*)", result.stderr)
    assert len(progress) == 1, result.stderr[-3000:]
    assert "sessions" in progress[0] and "p95" in progress[0]

    broken = ["p95[/slow]<20ms", "errors<1%", "rps>=1"]
    result, summary = _run(directory, shaped, "--quiet", *[a for t in broken for a in ("--fail-on", t)], seconds=3)
    assert result.returncode == EXIT_CODE, result.stderr[-3000:]
    verdicts = {v["expression"]: v for v in summary["thresholds"]}
    assert not verdicts["p95[/slow]<20ms"]["ok"] and verdicts["p95[/slow]<20ms"]["value"] >= SLOW_S * 1000
    assert not verdicts["errors<1%"]["ok"] and verdicts["rps>=1"]["ok"]
    assert re.search(r"^BROKE p95\[/slow\]<20ms: p95\[/slow\] = \d+ ms, over the limit of 20 ms by \d+ ms \(\d+%\)$",
                     result.stdout, re.M), result.stdout[-2000:]
    assert "2 of 3 thresholds broke: exit code 4" in result.stdout
    assert "replayer.watching" not in result.stderr, "--quiet: no progress line"


@pytest.mark.timeout(60)
def test_without_thresholds_a_failed_request_still_exits_1(shaped: int, tmp_path: Path) -> None:
    result, summary = _run(_recording(tmp_path, shaped), shaped, seconds=2)
    assert summary["total"]["failures"] > 0 and summary["thresholds"] == []
    assert result.returncode == 1, result.stderr[-3000:]


@pytest.mark.timeout(90)
def test_fail_on_abort_ends_the_run_once_a_count_can_no_longer_hold(shaped: int, tmp_path: Path) -> None:
    started = time.monotonic()
    result, summary = _run(_recording(tmp_path, shaped), shaped, "--fail-on", "failures<3", "--fail-on", "p95<5s",
                           "--fail-on-abort", seconds=60, timeout=80)
    assert result.returncode == EXIT_CODE, result.stderr[-3000:]
    assert time.monotonic() - started < 40 and summary["duration_s"] < 30, "ended long before its 60 s"
    assert "it cannot hold any more: ending the run (--fail-on-abort)" in result.stderr
    verdicts = {v["expression"]: v["ok"] for v in summary["thresholds"]}
    assert verdicts == {"failures<3": False, "p95<5s": True}


@pytest.mark.parametrize(("expression", "says"), [
    ("p95<5%", "a response time is in ms or s, not %"),
    ("p42<5ms", "no metric 'p42'"),
    ("errors<2", "a fraction of requests is at most 1"),
    ("p95 is low", "is not a threshold"),
    ("sessions_failed==0ms", "a plain number, not ms"),
])
@pytest.mark.timeout(30)
def test_a_bad_expression_is_one_line_before_anything_runs(expression: str, says: str, tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(make_session(), directory)
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(directory), "--host",
                             "http://127.0.0.1:9", "--headless", "--fail-on", expression],
                            capture_output=True, text=True, timeout=20, cwd=REPO_ROOT)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: setting 'fail_on' (--fail-on, REPLAY_FAIL_ON): ") and says in line, line
    assert expression in line


@pytest.mark.timeout(30)
def test_a_selector_that_names_no_recorded_endpoint_is_refused_with_the_closest(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(make_session([make_request("/api/orders/17"), make_request("/api/order-lines/3")]), directory)
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(directory), "--host",
                             "http://127.0.0.1:9", "--headless", "--fail-on", "p99[/api/order/{id}]<800ms"],
                            capture_output=True, text=True, timeout=20, cwd=REPO_ROOT)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line == ("error: --fail-on 'p99[/api/order/{id}]<800ms': no recorded endpoint '/api/order/{id}'"
                    " (closest: /api/orders/{id}, GET /api/orders/{id}, /api/order-lines/{id})"), line


def test_the_environment_takes_a_json_list() -> None:
    env = {**os.environ, "REPLAY_FAIL_ON": '["p95<500ms", "errors<1%"]'}
    code = "from traffic_replay.settings import Settings; print([t.expression for t in Settings.build().fail_on])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, env=env,
                            cwd=REPO_ROOT)
    assert result.stdout.strip() == "['p95<500ms', 'errors<1%']", result.stderr


def _summary() -> Summary:
    row = EndpointStats(method="GET", name="/items/{id}", requests=200, failures=3, median_ms=40, p90_ms=80,
                        p95_ms=120, p99_ms=300, avg_ms=50, max_ms=900, rps=20)
    return Summary(host=None, duration_s=10, endpoints=[row], total=row.model_copy(update={"method": ""}),
                   sessions=SessionStats(started=10, completed=8, failed=2), failures=[],
                   session_rows=[SessionRow(name="checkout", started=10, completed=8, failed=2)])


@pytest.mark.parametrize(("expression", "ok", "value"), [
    ("p95<500ms", True, 120.0), ("p95<0.1s", False, 120.0), ("p90[/items/{id}]<=80ms", True, 80.0),
    ("max<1s", True, 900.0), ("errors<1%", False, 1.5), ("errors<=0.015", True, 1.5), ("rps>=20", True, 20.0),
    ("failures==3", True, 3.0), ("requests[GET /items/{id}]>100", True, 200.0),
    ("sessions_failed==0", False, 2.0), ("sessions_failed[checkout]<3", True, 2.0),
    ("sessions_failed[never taken]==0", True, 0.0), ("divergences==0", True, 0.0),
])
def test_each_metric_is_read_from_the_summary(expression: str, ok: bool, value: float) -> None:
    verdict = judge(parse_threshold(expression), _summary())
    assert (verdict.ok, verdict.value) == (ok, value), verdict.detail


def test_an_endpoint_with_no_request_is_nothing_measured_and_breaks() -> None:
    summary = _summary().model_copy(update={"endpoints": []})
    verdict = judge(parse_threshold("p95[/items/{id}]<500ms"), summary)
    assert not verdict.ok and verdict.value is None and "nothing measured" in verdict.detail


def test_only_counts_that_can_only_grow_abort_a_run() -> None:
    assert parse_threshold("failures<10").worsens_only and parse_threshold("sessions_failed==0").worsens_only
    assert not parse_threshold("p95<500ms").worsens_only and not parse_threshold("errors<1%").worsens_only
    assert not parse_threshold("failures>10").worsens_only and not parse_threshold("requests<10").worsens_only
