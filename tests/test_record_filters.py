"""Filters, redaction and live counters through the real recorder (``replay record``)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from recorder.keys import ID_FILE, LEGACY_KEY_FILE, key_path
from traffic_replay.format import load_recordings

from processes import REPO_ROOT, free_port, interrupt, start_process, start_recorder, stop_process

pytestmark = pytest.mark.timeout(90)



def test_hosts_patterns_and_static_assets_are_filtered_and_counted(demo_target: str, tmp_path: Path) -> None:
    other, match = start_process([sys.executable, "-m", "traffic_replay.demo", "--port", "0"],
                                 r"demo target listening on (http://\S+)")
    try:
        out = tmp_path / "rec"
        allowed = demo_target.removeprefix("http://")
        proc, port = start_recorder(out, "--allow-host", allowed, "--exclude", r"/api/items/\d+$",
                                    "--exclude", r"[?&]q=", "--no-static")
        try:
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
                for url in [f"{demo_target}/api/items?page=1",  # kept
                            f"{demo_target}/api/items/3",  # excluded
                            f"{demo_target}/items?q=item",  # excluded
                            f"{demo_target}/static/app.js", f"{demo_target}/favicon.ico",  # static (404s, still)
                            f"{match.group(1)}/api/items?page=2",  # another host: not allowed
                            f"{demo_target}/items/4"]:  # kept
                    client.get(url)
            summary = interrupt(proc)
        finally:
            stop_process(proc)
    finally:
        stop_process(other)
    assert [r.path for s in load_recordings(out) for r in s.requests] == ["/api/items?page=1", "/items/4"]
    assert "2 requests recorded in 1 sessions" in summary
    assert "(5 skipped: 2 excluded, 2 static, 1 host not allowed)" in summary


def test_no_secret_reaches_the_recording_directory(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    secrets = {"password": "pw-in-a-form-3b91", "json": "pw-in-json-55e0", "query": "token-in-a-query-0c7d",
               "bearer": "bearer-token-a61f", "api_key": "api-key-header-9921", "custom": "custom-header-4e4e",
               "field": "custom-field-18aa"}
    proc, port = start_recorder(out, "--redact-header", "X-Tenant-Secret", "--redact-field", "pin_code")
    try:
        with httpx.Client(base_url=demo_target, proxy=f"http://127.0.0.1:{port}", trust_env=False,
                          headers={"Authorization": f"Bearer {secrets['bearer']}", "X-Api-Key": secrets["api_key"],
                                   "X-Tenant-Secret": secrets["custom"]}) as client:
            assert client.post("/login", data={"username": "ada", "password": secrets["password"]}).status_code == 401
            assert client.post("/login", data={"username": "ada", "password": "demo"}).status_code == 302
            session_cookie = client.cookies["sid"]  # handed out by the server: a secret too
            assert client.get(f"/account?access_token={secrets['query']}").status_code == 200
            client.post("/api/cart", json={"item_id": 1, "qty": 1, "password": secrets["json"],
                                           "extra": {"pin_code": secrets["field"]}})
        summary = interrupt(proc)
    finally:
        stop_process(proc)
    assert "4 requests recorded" in summary and "WARNING" not in summary
    files = [p for p in out.rglob("*") if p.is_file()]
    # The directory holds its id, not its key: that is in the (test's own) config directory.
    assert any(p.suffix == ".json" for p in files) and (out / ID_FILE) in files and not (out / LEGACY_KEY_FILE).exists()
    key = key_path(out).read_text().strip()
    assert all(key.encode() not in path.read_bytes() for path in files)
    for value in [*secrets.values(), session_cookie]:
        for path in files:
            assert value.encode() not in path.read_bytes(), f"{value} found in {path}"
    requests = [r for s in load_recordings(out) for r in s.requests]
    cookies = [v for r in requests for k, v in r.headers if k.lower() == "cookie"]
    set_cookies = [v for r in requests if r.response for k, v in r.response.headers if k.lower() == "set-cookie"]
    # The cookie the server set and the cookie sent back are one placeholder: correlation can still pair them.
    [placeholder] = {re.search(r"sid=([^;]*)", v).group(1) for v in cookies + set_cookies}  # type: ignore[union-attr]
    assert placeholder.startswith("«redacted:")


def test_no_redact_is_loud(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc, port = start_recorder(out, "--no-redact")
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            client.post(f"{demo_target}/login", data={"username": "ada", "password": "demo"})
        summary = interrupt(proc)
    finally:
        stop_process(proc)
    assert "WARNING: redaction is off (--no-redact)" in summary
    [request] = [r for s in load_recordings(out) for r in s.requests]
    assert request.body is not None and request.body.to_bytes() == b"username=ada&password=demo"


def _read_until(fd: int, pattern: str, seen: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while re.search(pattern, "".join(seen)) is None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {pattern!r} within {timeout}s in:\n{''.join(seen)!r}")
        try:
            seen.append(os.read(fd, 65536).decode("utf-8", "replace"))
        except OSError:  # EIO: the other end closed
            raise AssertionError(f"ended before {pattern!r}:\n{''.join(seen)!r}") from None


def test_live_counters_update_one_line_in_place_on_a_terminal(demo_target: str, tmp_path: Path) -> None:
    port = free_port()
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "160"}
    proc = subprocess.Popen([sys.executable, "-m", "traffic_replay.cli", "record", str(tmp_path / "rec"),
                             "--listen-port", str(port)], stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                            env=env, cwd=REPO_ROOT)
    os.close(terminal)
    seen: list[str] = []
    try:
        _read_until(controller, r"recording sessions into", seen)
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for i in (1, 2, 3):
                assert client.get(f"{demo_target}/api/items/{i}").status_code == 200
        _read_until(controller, r"3 requests, 1 session open, 0 written", seen)
        proc.send_signal(signal.SIGINT)
        _read_until(controller, r"3 requests recorded in 1 sessions", seen)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
        os.close(controller)
    text = "".join(seen)
    live = text[text.index("recording sessions into"):text.index("requests recorded in")]
    # Redrawn in place: carriage returns and erase-line codes, one line that never scrolls.
    assert "\r" in live and "\x1b[2K" in live
    assert live.count("\n") <= 2, live
