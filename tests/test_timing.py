"""Timing: the replay keeps the recorded think time between requests, divided by ``--speed``.

A small HTTP server in the test process logs when each request arrives and from which
virtual user (its own ``X-Client`` value, given by ``--data``). Arrivals are grouped into
session runs per user; the gap between two consecutive steps must match the recorded think
time divided by the speed. Tolerances are generous for a noisy CI machine: the tight
figures belong to the benchmark.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from traffic_replay.format import write_session

from factories import make_request, make_session

pytestmark = pytest.mark.timeout(120)

THINK_MS = (300.0, 500.0, 200.0)  # from the end of step k's response to the start of step k+1
DURATION_MS = 120.0  # recorded response time: long, so that a think time measured from the request start shows
USERS = 30
MEDIAN_TOLERANCE_MS = 40.0
P90_TOLERANCE_MS = 120.0

Arrival = tuple[str, str, float]  # (X-Client, path, time.time())


class ArrivalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LoggingHandler)
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LoggingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two sends: with Nagle on, a keep-alive client waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: ArrivalServer

    def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
        arrived = time.time()
        with self.server.lock:
            self.server.arrivals.append((self.headers.get("X-Client", ""), self.path, arrived))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would only slow the server down


@pytest.fixture
def arrival_server() -> Iterator[ArrivalServer]:
    server = ArrivalServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _recording(directory: Path) -> Path:
    """One session: GET /t/1 .. /t/4 by the recorded client, with the think times above."""
    requests = []
    offset = 0.0
    for step in range(1, 5):
        requests.append(make_request(f"/t/{step}", offset_ms=offset, duration_ms=DURATION_MS,
                                     headers=[("Host", "127.0.0.1:8000"), ("X-Client", "rec-client")]))
        if step <= len(THINK_MS):
            offset += DURATION_MS + THINK_MS[step - 1]
    directory.mkdir()
    write_session(make_session(requests, id="timed", name="timed"), directory)
    return directory


def _gaps(arrivals: list[Arrival], clients: set[str], speed: float) -> list[float]:
    """Absolute errors (ms) of the gaps between consecutive steps of each session run, per client."""
    by_client: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
    for client, path, t in arrivals:
        if client in clients:
            by_client[client].append((t, int(path.rsplit("/", 1)[1])))
    errors: list[float] = []
    for seen in by_client.values():
        seen.sort()
        for (t0, step0), (t1, step1) in zip(seen, seen[1:], strict=False):
            if step1 == step0 + 1:  # the same session run (/t/1 starts a new one)
                expected = THINK_MS[step0 - 1] / speed
                errors.append(abs((t1 - t0) * 1000 - expected))
    return errors


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


@pytest.mark.parametrize("speed", [1.0, 4.0], ids=["speed-1", "speed-4"])
def test_gaps_follow_the_recorded_think_time_divided_by_speed(arrival_server: ArrivalServer, tmp_path: Path,
                                                              speed: float) -> None:
    recordings = _recording(tmp_path / "rec")
    clients = {f"u{i:02}" for i in range(USERS)}
    rows = tmp_path / "clients.csv"
    rows.write_text("client\n" + "".join(f"{c}\n" for c in sorted(clients)))
    summary = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(recordings), "--host", arrival_server.url,
         "-u", str(USERS), "-r", str(USERS), "-t", "5s", "--headless", "--speed", f"{speed:g}", "--no-check",
         "--data", str(rows), "--data-map", "client=rec-client", "--summary-json", str(summary)],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert orjson.loads(summary.read_bytes())["total"]["failures"] == 0

    with arrival_server.lock:
        arrivals = list(arrival_server.arrivals)
    senders = {client for client, _, _ in arrivals}
    assert senders == clients, "each virtual user sent its own row's X-Client, never the recorded one"

    errors = _gaps(arrivals, clients, speed)
    assert len(errors) >= 30 * max(speed, 1.0) * 3, f"too few gaps to judge: {len(errors)}"
    median, p90 = statistics.median(errors), _p90(errors)
    figures = f"speed {speed:g}: {len(errors)} gaps, |error| median {median:.1f} ms, p90 {p90:.1f} ms"
    assert median < MEDIAN_TOLERANCE_MS, figures
    assert p90 < P90_TOLERANCE_MS, figures
