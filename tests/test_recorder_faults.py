"""The recorder under faults: a client that gives up mid-request, an upstream that dies, a full disk.

Real processes on 127.0.0.1: ``replay record`` in reverse mode in front of the demo target
(its own process, killed by PID when the upstream must die), clients on real sockets, and
for the full disk a 2 MiB tmpfs mounted as the recordings directory (the tests run as
root, as CI does). For each: nothing the clients got back is lost (it is in the session
files, or, for the full disk, in what ``replay recover`` writes once there is room), and
what the recorder prints says what happened. SIGKILL is ``test_crash_recovery.py``'s.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_crash_recovery import _recorded

from traffic_replay.errors import RecordingStopped

from processes import REPO_ROOT, interrupt, start_recorder, stop_process, target_log

pytestmark = pytest.mark.timeout(90)

REPLAY = [sys.executable, "-m", "traffic_replay.cli"]
Received = tuple[str, str, int, str]
"""(User-Agent, path, status, body) of one answer a client got."""


class Client(threading.Thread):
    """Sends numbered GETs through the proxy until told to stop; keeps every answer it got."""

    def __init__(self, proxy_port: int, agent: str) -> None:
        super().__init__(daemon=True)
        self.base, self.agent = f"http://127.0.0.1:{proxy_port}", agent
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(trust_env=False, timeout=5, headers={"User-Agent": self.agent}) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                path = f"/api/items/{n % 50 + 1}?n={n}"
                try:
                    r = c.get(f"{self.base}{path}")
                except httpx.HTTPError as e:
                    self.errors.append(type(e).__name__)
                    time.sleep(0.05)
                    continue
                self.received.append((self.agent, path, r.status_code, r.text))
                time.sleep(0.01)


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_a_client_that_disconnects_mid_request_loses_nothing_else(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc, port = start_recorder(out, "--mode", f"reverse:{demo_target}", "--no-live")
    try:
        received: list[Received] = []
        with httpx.Client(trust_env=False, timeout=5, headers={"User-Agent": "whole/1.0"}) as c:
            for n in range(1, 11):
                if n == 6:
                    # Headers and half the promised body, then gone.
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                        raw.sendall(b"POST /api/items?half=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: half/1.0\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b"{" * 500)
                        time.sleep(0.2)
                path = f"/api/items/{n}?n={n}"
                r = c.get(f"http://127.0.0.1:{port}{path}")
                received.append(("whole/1.0", path, r.status_code, r.text))
        output = interrupt(proc)
    finally:
        stop_process(proc)
    assert "Traceback" not in output, output
    recorded = _recorded(out)
    assert sorted(recorded) == sorted(received) and len(received) == 10
    # The half request never reached the upstream, and the recorder says one flow was not recorded.
    assert not any("half=1" in r["path"] for r in target_log(demo_target))
    summary = [line for line in _lines(output) if "requests recorded" in line]
    assert summary == [f"replay: 10 requests recorded in 1 sessions into {out}/ (1 skipped: 1 client disconnected "
                       "mid-request)"], output


def _started_and_answered(clients: list[Client], answers: int) -> float:
    """Start the clients and wait until they have had ``answers`` answers between them; the deadline
    (20 s from the start) for the rest of the test's waits."""
    for c in clients:
        c.start()
    deadline = time.monotonic() + 20
    while sum(len(c.received) for c in clients) < answers and time.monotonic() < deadline:
        time.sleep(0.05)
    return deadline

def test_an_upstream_that_dies_mid_recording_loses_nothing_it_answered(
        demo_target_process: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    upstream, url = demo_target_process
    out = tmp_path / "rec"
    proc, port = start_recorder(out, "--mode", f"reverse:{url}", "--no-live")
    clients = [Client(port, f"upstream-test-{n}/1.0") for n in range(3)]
    try:
        deadline = _started_and_answered(clients, 60)
        upstream.kill()  # by its PID: the demo target this test started
        upstream.wait(10)
        after = sum(len(c.received) for c in clients)
        while sum(len(c.received) for c in clients) < after + 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        assert proc.poll() is None, "the recorder stopped with its upstream"
        output = interrupt(proc)
    finally:
        stop_process(proc)
    assert "Traceback" not in output, output
    received = [r for c in clients for r in c.received]
    answered = [r for r in received if r[2] == 200]
    refused = [r for r in received if r[2] == 502]  # mitmproxy's own answer, for flows it had begun
    closed = [e for c in clients for e in c.errors]  # connections it closed at once: no upstream to connect to
    assert len(answered) >= 60 and len(answered) + len(refused) == len(received), (len(answered), len(refused))
    assert len(refused) + len(closed) >= 15 and set(closed) <= {"RemoteProtocolError", "ReadError"}, closed
    recorded = _recorded(out)
    assert sorted(recorded) == sorted(answered)  # every answer of the upstream, nothing of the proxy's own
    lines = _lines(output)
    warnings = [line for line in lines if "WARNING: upstream" in line]
    at = url.rsplit(":", 1)[1]
    assert warnings == [f"replay: WARNING: upstream 127.0.0.1:{at} unreachable ([Errno 111] Connect call failed "
                        f"('127.0.0.1', {at})): its clients get 502 Bad Gateway or a closed connection, and nothing "
                        "is recorded until it answers"], output
    [summary] = [line for line in lines if "requests recorded" in line]
    match = re.fullmatch(rf"replay: {len(answered)} requests recorded in 3 sessions into {re.escape(str(out))}/ "
                         rf"\({len(refused)} skipped: {len(refused)} no answer from upstream\); "
                         r"(\d+) connections to the upstream failed", summary)
    assert match is not None and int(match.group(1)) >= len(closed), (summary, len(closed))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on a fresh directory, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=30)


def _fill(disk: Path) -> Path:
    """Take every byte left on ``disk``: a file written until the filesystem says it is full."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_recorder_loudly_and_recover_keeps_every_answer(
        demo_target: str, small_disk: Path, tmp_path: Path) -> None:
    out = small_disk / "rec"
    proc, port = start_recorder(out, "--mode", f"reverse:{demo_target}", "--no-live", "--idle-gap", "1")
    clients = [Client(port, f"disk-test-{n}/1.0") for n in range(2)]
    try:
        _started_and_answered(clients, 40)
        filler = _fill(small_disk)
        code = proc.wait(20)  # the next flow cannot be journaled: the recorder stops
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        assert proc.stdout is not None
        output = proc.stdout.read()
    finally:
        stop_process(proc)
    assert code == RecordingStopped.exit_code, output
    assert "Traceback" not in output, output
    errors = [line for line in _lines(output) if "No space left on device" in line]
    assert len(errors) == 1 and str(out) in errors[0] and "stopping the proxy" in errors[0], output
    received = [r for c in clients for r in c.received]
    assert len(received) >= 40 and all(r[2] == 200 for r in received)

    filler.unlink()  # room again: what the journal kept can be written
    done = subprocess.run([*REPLAY, "recover", str(out)], capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    recorded = _recorded(out)
    missing = [r[:3] for r in received if r not in recorded]
    assert missing == [], f"{len(missing)} answers the clients got are lost, e.g. {missing[:3]}"
    assert len(recorded) == len(set(recorded))
