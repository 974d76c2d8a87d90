"""Host safety: a replay sends only to ``--host`` and to hosts mapped with ``--map-host``.

A recording with two hosts, both real demo targets on loopback ports: A is the primary
host (most requests went there, so ``--host`` stands for it), B is the other one. What
each target received (``GET /__log``) is the truth; the summary must count what was
skipped and say why, and a dry run must send nothing at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from traffic_replay.format import Request, write_session

from factories import make_request, make_session
from processes import REPO_ROOT, start_process, stop_process, target_log

pytestmark = pytest.mark.timeout(150)

DEMO_READY = r"demo target listening on (http://\S+)"

A_PATHS = ["/api/items/1", "/api/items/2", "/items/3", "/api/items/4"]
B_PATHS = ["/api/items/7", "/items/8"]


def replay(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``replay ARGS`` as a user types it, with no ``REPLAY_*`` variables leaking in from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def second_target() -> Iterator[str]:
    """Another demo target in a process of its own: the recording's second host."""
    proc, match = start_process([sys.executable, "-m", "traffic_replay.demo", "--port", "0"], DEMO_READY,
                                timeout=10, cwd=REPO_ROOT)
    try:
        yield match.group(1)
    finally:
        stop_process(proc)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _at(url: str, path: str, offset_ms: float) -> Request:
    return make_request(path, offset_ms=offset_ms, host="127.0.0.1", port=_port(url),
                        headers=[("Host", f"127.0.0.1:{_port(url)}"), ("User-Agent", "test/1.0")])


def _two_host_recording(directory: Path, a: str, b: str, websocket: bool = False) -> Path:
    """One session: A, B, A, A, B, A (and a WebSocket upgrade to A, if asked)."""
    order = [(a, A_PATHS[0]), (b, B_PATHS[0]), (a, A_PATHS[1]), (a, A_PATHS[2]), (b, B_PATHS[1]), (a, A_PATHS[3])]
    requests = [_at(url, path, offset_ms=10.0 * i) for i, (url, path) in enumerate(order)]
    if websocket:
        upgrade = make_request("/ws", offset_ms=100, host="127.0.0.1", port=_port(a), status=101, headers=[
            ("Host", f"127.0.0.1:{_port(a)}"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
        requests.insert(3, upgrade)
    directory.mkdir()
    write_session(make_session(requests, id="two-hosts", name="two hosts"), directory)
    return directory


def _run(recordings: Path, host: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                dict[str, Any]]:
    summary = tmp_path / "summary.json"
    result = replay("run", str(recordings), "--host", host, "-u", "2", "-r", "2", "-t", "3s", "--headless",
                    "--speed", "0", "--no-check", "--summary-json", str(summary), *extra, cwd=tmp_path)
    assert summary.is_file(), result.stdout[-2000:] + result.stderr[-3000:]
    return result, orjson.loads(summary.read_bytes())


def _paths(url: str) -> list[str]:
    return [e["path"] for e in target_log(url)]


def test_requests_to_an_unmapped_host_are_skipped_counted_and_never_sent(demo_target: str, second_target: str,
                                                                        tmp_path: Path) -> None:
    recordings = _two_host_recording(tmp_path / "rec", demo_target, second_target)
    result, summary = _run(recordings, demo_target, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    assert _paths(second_target) == [], "nothing may reach a recorded host that was not mapped"
    received = _paths(demo_target)
    assert set(received) == set(A_PATHS), "A got its own requests, and not B's"
    assert summary["total"]["failures"] == 0

    # Every replayed session skipped both B steps, under a reason that names the host.
    reason = f"host 127.0.0.1:{_port(second_target)} not mapped"
    assert list(summary["skipped"]) == [reason]
    ended = summary["sessions"]["completed"] + summary["sessions"]["failed"]
    assert ended > 5
    assert 2 * ended <= summary["skipped"][reason] <= 2 * summary["sessions"]["started"]
    assert "skipped, never sent" in result.stdout and f"127.0.0.1:{_port(second_target)}" in result.stdout


def test_a_mapped_host_gets_exactly_its_own_requests(demo_target: str, second_target: str, tmp_path: Path) -> None:
    recordings = _two_host_recording(tmp_path / "rec", demo_target, second_target)
    result, summary = _run(recordings, demo_target, tmp_path,
                           "--map-host", f"127.0.0.1:{_port(second_target)}={second_target}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["skipped"] == {} and summary["total"]["failures"] == 0
    at_a, at_b = _paths(demo_target), _paths(second_target)
    assert set(at_a) == set(A_PATHS) and set(at_b) == set(B_PATHS)
    # Whole sessions: each one sent both B requests and four A requests (one may be cut short at the stop).
    assert len(at_b) > 5 and abs(len(at_a) - 2 * len(at_b)) <= 4 * 2


def test_dry_run_shows_what_would_go_where_and_sends_nothing(demo_target: str, second_target: str,
                                                             tmp_path: Path) -> None:
    recordings = _two_host_recording(tmp_path / "rec", demo_target, second_target, websocket=True)
    result = replay("run", str(recordings), "--host", demo_target, "--dry-run", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "two hosts" in out, "the plan is given per session"
    for path in A_PATHS:
        assert f"GET {demo_target}{path}" in out
    assert all(path in out for path in B_PATHS)
    assert out.count(f"skipped: host 127.0.0.1:{_port(second_target)} not mapped") == len(B_PATHS)
    assert "skipped: websocket" in out
    assert "4 of 7 requests would be sent" in out
    assert _paths(demo_target) == [] and _paths(second_target) == [], "a dry run sends nothing"

    # Mapped, B's requests are planned to B's own URL.
    mapped = replay("run", str(recordings), "--host", demo_target, "--dry-run",
                    "--map-host", f"127.0.0.1:{_port(second_target)}={second_target}", cwd=tmp_path, timeout=60)
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    for path in B_PATHS:
        assert f"GET {second_target}{path}" in mapped.stdout
    assert "not mapped" not in mapped.stdout and "6 of 7 requests would be sent" in mapped.stdout
    assert _paths(demo_target) == [] and _paths(second_target) == []


def test_a_websocket_upgrade_is_skipped_counted_and_never_sent(demo_target: str, second_target: str,
                                                              tmp_path: Path) -> None:
    recordings = _two_host_recording(tmp_path / "rec", demo_target, second_target, websocket=True)
    result, summary = _run(recordings, demo_target, tmp_path,
                           "--map-host", f"127.0.0.1:{_port(second_target)}={second_target}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(summary["skipped"]) == ["websocket"]
    ended = summary["sessions"]["completed"] + summary["sessions"]["failed"]
    assert ended > 5 and ended <= summary["skipped"]["websocket"] <= summary["sessions"]["started"]
    assert "/ws" not in _paths(demo_target) and "/ws" not in _paths(second_target)
    assert set(_paths(demo_target)) == set(A_PATHS) and set(_paths(second_target)) == set(B_PATHS)
    assert summary["total"]["failures"] == 0 and "websocket" in result.stdout


def test_dry_run_does_not_show_an_unmapped_request_as_going_to_the_host(demo_target: str, second_target: str,
                                                                          tmp_path: Path) -> None:
    """The plan says where each request goes: a request recorded to B is not listed under A's URL."""
    recordings = _two_host_recording(tmp_path / "rec", demo_target, second_target)
    result = replay("run", str(recordings), "--host", demo_target, "--dry-run", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {path: next(line for line in result.stdout.splitlines() if path in line) for path in B_PATHS}
    for path, row in rows.items():
        assert f"{demo_target}{path}" not in row, f"a skipped request of B is shown as sent to --host: {row}"
        assert "skipped" in row
