"""Open model, timeline and concurrent overlaps, against a real server that can be slow."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from traffic_replay.format import replace, write_session

from factories import make_request, make_session
from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


class SlowServer(ThreadingHTTPServer):
    """Answers every path 200; ``/slow`` after 300 ms. Logs (path, arrival time)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        with self.server.lock:
            self.server.arrivals.append((self.path, time.time()))
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[SlowServer]:
    srv = SlowServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _replay(directory: Path, host: str, tmp_path: Path, *args: str) -> dict[str, object]:
    """``replay run`` on ``directory``; its summary, written outside the recordings."""
    summary = tmp_path / f"summary-{len(list(tmp_path.glob('summary-*')))}.json"
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(directory), "--host", host,
                             "--headless", "--no-check", "--summary-json", str(summary), *args],
                            capture_output=True, text=True, timeout=90, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return orjson.loads(summary.read_bytes())


def test_the_open_model_starts_sessions_at_the_rate_whatever_the_latency(server: SlowServer, tmp_path: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    recordings = tmp_path / "rec"
    recordings.mkdir()
    write_session(make_session([make_request("/slow", port=port, duration_ms=300)]), recordings)
    closed = _replay(recordings, server.url, tmp_path, "-u", "2", "-r", "2", "-t", "4s", "--speed", "0")
    opened = _replay(recordings, server.url, tmp_path, "-u", "2", "-r", "2", "-t", "4s", "--session-rate", "20")
    # Two closed-model users wait for each 300 ms answer: at most ~7 sessions/s. The open model keeps 20/s.
    closed_rate = closed["sessions"]["started"] / closed["duration_s"]  # type: ignore[index,operator]
    open_rate = opened["sessions"]["started"] / opened["duration_s"]  # type: ignore[index,operator]
    assert closed_rate < 8 and 14 < open_rate < 26, (closed_rate, open_rate)
    total = opened["total"]  # type: ignore[index]
    assert total["intended_median_ms"] >= 290 and total["median_ms"] >= 290  # type: ignore[index]
    assert closed["total"]["intended_median_ms"] is None  # type: ignore[index]


def test_the_timeline_starts_sessions_at_their_recorded_times(server: SlowServer, tmp_path: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    recordings = tmp_path / "rec"
    recordings.mkdir()
    for i in range(3):
        session = make_session([make_request(f"/s{i}", port=port)], id=f"s{i}")
        write_session(replace(session, started_at=t0 + timedelta(seconds=1.2 * i)), recordings)
    _replay(recordings, server.url, tmp_path, "-u", "1", "-r", "1", "-t", "2s", "--timeline", "--speed", "2")
    first = {path: t for path, t in reversed(server.arrivals)}  # the first arrival of each path
    gaps = [first["/s1"] - first["/s0"], first["/s2"] - first["/s1"]]
    assert all(0.45 < gap < 0.85 for gap in gaps), gaps  # 1.2 s recorded, at speed 2


@pytest.mark.parametrize("parallel", [True, False])
def test_overlapping_requests_are_sent_together_when_asked(server: SlowServer, tmp_path: Path,
                                                           parallel: bool) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    recordings = tmp_path / "rec"
    recordings.mkdir()
    # A page (slow) and two assets the browser asked for before the page had arrived.
    write_session(make_session([make_request("/slow/page", port=port, offset_ms=0, duration_ms=300),
                                make_request("/asset.css", port=port, offset_ms=20, duration_ms=5),
                                make_request("/asset.js", port=port, offset_ms=30, duration_ms=5)]), recordings)
    flag = ["--parallel-overlaps"] if parallel else []
    _replay(recordings, server.url, tmp_path, "-u", "1", "-r", "1", "-t", "1s", "--speed", "1", *flag)
    first = {path: t for path, t in reversed(server.arrivals)}
    lag = first["/asset.js"] - first["/slow/page"]
    assert (lag < 0.2) if parallel else (lag >= 0.29), lag
