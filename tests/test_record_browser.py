"""A real browser through the recorder: Debian's headless Chromium loads pages of the demo
target via ``replay record``, and the session file holds exactly what reached the target.

CI installs Chromium (``apt-get install -y chromium``); a missing browser fails this test.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from traffic_replay.format import load_recordings

from processes import start_recorder, stop_process, target_log

pytestmark = pytest.mark.timeout(180)

PAGES = [("/", "<title>Demo shop</title>"), ("/items?page=2", "<title>Items</title>"),
         ("/items/3", "<title>Item 3</title>")]


def _chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is not installed: apt-get update && apt-get install -y chromium"
    return found


def test_headless_chromium_pages_are_recorded(demo_target: str, tmp_path: Path) -> None:
    chromium = _chromium()
    out = tmp_path / "rec"
    target_host = demo_target.removeprefix("http://")
    # --allow-host: the browser's own background traffic (updates, safe browsing) is not the demo's.
    proc, port = start_recorder(out, "--allow-host", target_host)
    try:
        for path, title in PAGES:
            # <-loopback> makes Chromium proxy 127.0.0.1 too, which it bypasses by default.
            page = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", f"--proxy-server=http://127.0.0.1:{port}",
                 "--proxy-bypass-list=<-loopback>", "--dump-dom", f"{demo_target}{path}"],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert page.returncode == 0, page.stderr[-2000:]
            assert title in page.stdout, page.stdout[:500]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    reached = [(e["method"], e["path"], e["status"]) for e in target_log(demo_target)]
    [session] = load_recordings(out)
    recorded = [(r.method, r.path, r.response.status if r.response else None) for r in session.requests]
    # Every page the browser loaded, in order. Its favicon fetches race its exit (a fetch dropped
    # half-way was answered by the target but never received), so they are only checked as a subset.
    pages = [("GET", path, 200) for path, _ in PAGES]
    assert [x for x in recorded if x[1] != "/favicon.ico"] == [x for x in reached if x[1] != "/favicon.ico"] == pages
    assert all(x in reached for x in recorded)
    for request in session.requests:
        headers = {k.lower(): v for k, v in request.headers}
        assert "HeadlessChrome" in headers["user-agent"]
        assert (request.host, request.port) == ("127.0.0.1", int(target_host.rsplit(":", 1)[1]))
    page_bodies = [r.response.body.to_bytes() for r in session.requests if r.response and r.response.body]
    assert any(b"<title>Item 3</title>" in body for body in page_bodies)
    assert session.client.user_agent is not None and "HeadlessChrome" in session.client.user_agent
