"""A target that refuses, resets or stalls shows up as failures in the stats, never as a crashed run."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from traffic_replay.format import write_session

from factories import make_request, make_session
from processes import REPO_ROOT, free_port

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def misbehaving() -> Iterator[dict[str, int]]:
    """Two listeners on 127.0.0.1: one resets every connection, one accepts and never answers."""
    resetter, staller = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve(server: socket.socket, reset: bool) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # linger 0: an RST, not a clean close
            else:
                held.append(conn)

    threads = [threading.Thread(target=serve, args=(resetter, True), daemon=True),
               threading.Thread(target=serve, args=(staller, False), daemon=True)]
    for t in threads:
        t.start()
    yield {"reset": resetter.getsockname()[1], "stall": staller.getsockname()[1], "refuse": free_port()}
    stop.set()
    for t in threads:
        t.join(2)
    for s in [resetter, staller, *held]:
        s.close()


@pytest.mark.parametrize("fault", ["refuse", "reset", "stall"])
def test_a_failing_target_is_failures_in_the_stats(misbehaving: dict[str, int], tmp_path: Path, fault: str) -> None:
    port = misbehaving[fault]
    recordings = tmp_path / "rec"
    recordings.mkdir()
    write_session(make_session([make_request("/items/1", port=port), make_request("/items/2", port=port)]),
                  recordings)
    summary_file = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(recordings), "--host", f"http://127.0.0.1:{port}",
         "-u", "2", "-r", "2", "-t", "3s", "--headless", "--no-check", "--timeout", "0.5",
         "--summary-json", str(summary_file)], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["total"]["requests"] > 0 and summary["total"]["failures"] == summary["total"]["requests"]
    assert all("session 'test session' step" in f["error"] for f in summary["failures"])
    assert summary["sessions"]["failed"] > 0
