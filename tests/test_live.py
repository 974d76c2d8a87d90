"""While a run goes on: the progress line on a terminal, and the web UI's Sessions tab."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest

from traffic_replay.format import load_recordings
from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from processes import REPO_ROOT, free_port, stop_process

BUNDLED = REPO_ROOT / "recordings"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env() -> dict[str, str]:
    return {**os.environ, **read_env_file(BUNDLED / DEMO_SECRETS), "PYTHONUNBUFFERED": "1"}


@pytest.mark.timeout(60)
def test_on_a_terminal_the_progress_line_is_redrawn_in_place_with_the_log_above_it(demo_target: str) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal 160 wide
    proc = subprocess.Popen(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(BUNDLED), "--host", demo_target, "-u", "3", "-r", "3",
         "-t", "4s", "--headless", "--speed", "0", "--no-check"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, cwd=REPO_ROOT, env=_env())
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the other end closed: the run is over
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(20) == 0
    finally:
        stop_process(proc)
        os.close(leader)
    text = seen.decode(errors="replace")
    lines = re.findall(r"\d:\d\d/0:04 +users \d+ +[\d.]+ req/s +requests \d+ +failures 0 +p95 \d+ ms +sessions \d+ "
                       r"completed, 0 failed", _ANSI.sub("", text))
    assert len(lines) >= 2, text[-3000:]
    assert _ANSI.search(text), "redrawn in place: the terminal is told to move and erase"
    assert "All users spawned" in text, "the log's own lines still reach the terminal"
    assert "replayer.watching" not in text, "on a terminal no plain progress lines"


@pytest.mark.timeout(90)
def test_the_web_ui_has_a_sessions_tab_fed_by_the_running_replay(demo_target: str, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(BUNDLED), "--host", demo_target, "--speed", "0",
         "--no-check", "--web-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=_env())
    ui = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=ui, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    page = client.get("/")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "the web UI did not come up"
                    time.sleep(0.2)
            # The tab is declared to Locust's UI through its template arguments.
            assert '"extended_tabs"' in page.text and '"Sessions"' in page.text
            assert client.post("/swarm", data={"user_count": 3, "spawn_rate": 3, "host": demo_target}).is_success
            deadline = time.monotonic() + 30
            while True:
                rows = {r["name"]: r for r in client.get("/sessions").json()}
                if sum(r["completed"] for r in rows.values()) >= 5:
                    break
                assert time.monotonic() < deadline, rows
                time.sleep(0.5)
            assert set(rows) <= {s.name for s in load_recordings(BUNDLED)}
            assert all(r["failed"] == 0 and r["started"] >= r["completed"] for r in rows.values()), rows
            assert any(r["median_s"] > 0 for r in rows.values())
            # What the tab itself polls: Locust's request stats, with our rows beside them.
            stats = client.get("/stats/requests").json()
            [extended] = [e for e in stats["extended_stats"] if e["key"] == "sessions"]
            assert {r["name"] for r in extended["data"]} >= set(rows)
            assert not any(s["method"] == "SESSION" for s in stats["stats"]), "sessions are not requests"
            csv = client.get("/sessions/csv")
            assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("Session,Started,")
            client.get("/stop")
    finally:
        stop_process(proc, grace=15)
