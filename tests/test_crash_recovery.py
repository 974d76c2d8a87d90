"""kill -9 of a real recorder mid-stream: everything the clients got back is in the recovered sessions.

Real processes on 127.0.0.1: the demo target, ``replay record`` (mitmproxy), clients
sending in threads while the recorder is killed, then ``replay record`` restarted on the
same directory or ``replay recover DIR``. Also: an unusable directory stops the recorder
with one line and a non-zero exit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from traffic_replay.format import load_recordings

from processes import REPO_ROOT, free_port, start_process, stop_process

pytestmark = pytest.mark.timeout(90)

RECORDING = r"recording sessions into"
REPLAY = [sys.executable, "-m", "traffic_replay.cli"]


def _record(out: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc, _ = start_process([*REPLAY, "record", str(out), "--listen-port", str(port), "--idle-gap", "1", *extra],
                            RECORDING, timeout=30, merge_stderr=True)
    return proc


class Client(threading.Thread):
    """One user sending numbered requests until told to stop or the proxy goes away."""

    def __init__(self, name: str, proxy: str, target: str, pause: float) -> None:
        super().__init__(daemon=True)
        self.agent, self.proxy, self.target, self.pause = f"crash-test-{name}/1.0", proxy, target, pause
        self.received: list[tuple[str, str, int, str]] = []  # (user agent, path, status, body)
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(proxy=self.proxy, trust_env=False, timeout=5, headers={"User-Agent": self.agent}) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                path = f"/api/items/{n % 50 + 1}?n={n}&who={self.agent}"
                try:
                    response = c.get(f"{self.target}{path}")
                except httpx.HTTPError:
                    return  # the proxy died under us: what was in flight may be lost
                self.received.append((self.agent, path, response.status_code, response.text))
                # A burst, then a pause longer than the idle gap: sessions get written mid-run too.
                time.sleep(self.pause if n % 15 else 1.5)


def _recorded(out: Path) -> list[tuple[str, str, int, str]]:
    found = []
    for session in load_recordings(out):
        for r in session.requests:
            assert r.response is not None
            body = r.response.body.to_bytes().decode() if r.response.body else ""
            found.append((dict(r.headers).get("User-Agent", ""), r.path, r.response.status, body))
    return found


@pytest.mark.parametrize("how", ["restart", "recover"])
def test_sigkill_mid_stream_loses_nothing_the_clients_received(demo_target: str, tmp_path: Path, how: str) -> None:
    out = tmp_path / "rec"
    port = free_port()
    recorder = _record(out, port)
    clients = [Client(name, f"http://127.0.0.1:{port}", demo_target, pause) for name, pause in
               (("a", 0.01), ("b", 0.03), ("c", 0.0))]
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 20
        # Kill once some sessions have been written (idle gaps) and others are open and busy.
        while (len(list(out.glob("*.json"))) < 2 or sum(len(c.received) for c in clients) < 100) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        recorder.send_signal(signal.SIGKILL)
        assert recorder.wait(10) == -signal.SIGKILL
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        stop_process(recorder)
    written_before = len(list(out.glob("*.json")))
    assert written_before >= 2 and list((out / ".journal").glob("*.jsonl")), "nothing was left to recover"

    if how == "restart":
        # The restarted recorder recovers before it listens, and says so.
        again, _ = start_process([*REPLAY, "record", str(out), "--listen-port", str(free_port())],
                                 r"replay: recovered \d+ requests", timeout=30, merge_stderr=True)
        assert again.stdout is not None
        while RECORDING not in again.stdout.readline():  # SIGINT before this line would kill it outright
            assert again.poll() is None
        again.send_signal(signal.SIGINT)
        assert again.wait(30) == 0
        stop_process(again)
    else:
        done = subprocess.run([*REPLAY, "recover", str(out)], capture_output=True, text=True, timeout=30,
                              cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        assert "replay: recovered" in done.stderr

    received = [r for c in clients for r in c.received]
    recorded = _recorded(out)
    assert len(received) >= 100
    missing = [r[:3] for r in received if r not in recorded]
    assert missing == [], f"{len(missing)} responses the clients got are not recorded, e.g. {missing[:3]}"
    # Nothing twice: sessions written before the kill are not recovered again.
    assert len(recorded) == len(set(recorded))
    assert len(list(out.glob("*.json"))) > written_before
    assert list((out / ".journal").glob("*.jsonl")) == []


@pytest.mark.parametrize("spoil", ["directory is a file", "journal directory is a file"])
def test_an_unusable_directory_is_one_line_and_a_non_zero_exit(tmp_path: Path, spoil: str) -> None:
    out = tmp_path / "rec"
    if spoil == "directory is a file":
        out.write_text("not a directory")
    else:
        out.mkdir()
        (out / ".journal").write_text("not a directory")
    done = subprocess.run([*REPLAY, "record", str(out), "--listen-port", str(free_port())], capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(out) in lines[0] and "Traceback" not in done.stderr
