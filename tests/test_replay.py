"""Replay with the real Locust through ``replay run``, checked from the target's own side."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote_plus

import orjson
import pytest

from traffic_replay.format import load_recordings
from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from processes import REPO_ROOT, target_log

pytestmark = pytest.mark.timeout(90)

BUNDLED = REPO_ROOT / "recordings"


def replay(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``replay`` with the bundled demo password supplied, as ``replay demo`` does."""
    secrets = read_env_file(BUNDLED / DEMO_SECRETS)
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env={**os.environ, **secrets})


def _sent(method: str, path: str, body: str) -> tuple[str, str, str]:
    """A request as the target saw it, with the password's placeholder and its value made one."""
    password = f"password={quote(read_env_file(BUNDLED / DEMO_SECRETS).popitem()[1])}"
    return method, path, re.sub(r"password=[^&]*", password, unquote_plus(body).replace("«", "").replace("»", ""))


def _recorded(directory: Path) -> set[tuple[str, str, str]]:
    return {_sent(r.method, r.path, r.body.to_bytes().decode() if r.body else "")
            for s in load_recordings(directory) if s.name != "sell an item" for r in s.requests}


def test_replay_sends_the_recorded_requests_with_no_failures(demo_target: str, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    result = replay("run", str(BUNDLED), "--host", demo_target, "-u", "5", "-r", "5", "-t", "4s", "--headless",
                    "--speed", "0", "--no-check", "--summary-json", str(summary_file),
                    "--csv", str(tmp_path / "stats"), "--html", str(tmp_path / "report.html"),
                    "--locust-html", str(tmp_path / "locust.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    seen = target_log(demo_target)
    # The sessions without values to carry over arrive exactly as recorded (the password supplied);
    # the one with CSRF tokens, ids and a bearer token arrives with live ones (tests/test_stateful_replay.py).
    selling = ("/signin", "/sell", "/api/listings", "/listings/", "/api/token", "/api/me")
    received = {_sent(e["method"], e["path"], e["body"]) for e in seen if not e["path"].startswith(selling)}
    assert received == _recorded(BUNDLED), "every recorded request, and nothing else, reached the target"
    # Each user logged in with its own cookie jar: the pages behind the login saw a user.
    assert {e["status"] for e in seen if e["path"] == "/account"} == {200}
    assert all(e["user"] for e in seen if e["path"] in ("/account", "/api/cart"))
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["total"]["failures"] == 0 and summary["failures"] == []
    assert summary["total"]["requests"] >= len(seen) - 5 * 10  # requests in flight at the stop may be unreported
    assert summary["sessions"]["started"] >= summary["sessions"]["completed"] > 10
    assert summary["sessions"]["failed"] == 0
    names = {e["name"] for e in summary["endpoints"]}
    assert "/items/{id}" in names and not any("?" in n or n[-1].isdigit() for n in names)
    assert (tmp_path / "stats_stats.csv").is_file() and (tmp_path / "locust.html").is_file()
    assert 'data-chart="rps"' in (tmp_path / "report.html").read_text(), "--html is our own report"
    # Sessions are not requests: none in Locust's own stats.
    assert "SESSION" not in (tmp_path / "stats_stats.csv").read_text()
    assert "Aggregated" in result.stdout and "sessions:" in result.stdout


def test_a_status_class_that_differs_from_the_recording_is_a_failure(demo_target: str, tmp_path: Path) -> None:
    # The recorded /account answered 200 after a login; without the login it answers 302.
    from traffic_replay.format import write_session

    from factories import make_request, make_session
    write_session(make_session([make_request("/account", status=200)], name="no login"), tmp_path)
    summary_file = tmp_path / "summary.json"
    result = replay("run", str(tmp_path), "--host", demo_target, "-u", "1", "-t", "2s", "--headless",
                    "--speed", "0", "--summary-json", str(summary_file))
    assert result.returncode == 1
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["total"]["failures"] == summary["total"]["requests"] > 0
    assert summary["failures"][0]["error"] == "session 'no login' step 1: status 302, recorded 2xx"
    assert summary["sessions"]["failed"] > 0 and summary["sessions"]["completed"] == 0


def test_the_locustfile_runs_under_plain_locust(demo_target: str, tmp_path: Path) -> None:
    env_run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "replayer" / "locustfile.py"), "--headless",
         "-u", "2", "-r", "2", "-t", "2s", "--host", demo_target],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**_env(), **read_env_file(BUNDLED / DEMO_SECRETS), "REPLAY_RECORDINGS": str(BUNDLED), "REPLAY_SPEED": "0",
             "REPLAY_SUMMARY_JSON": str(tmp_path / "s.json")})
    assert env_run.returncode == 0, env_run.stderr[-3000:]
    assert orjson.loads((tmp_path / "s.json").read_bytes())["total"]["requests"] > 0
    assert target_log(demo_target)


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}


def test_replay_without_headless_serves_the_web_ui(demo_target: str) -> None:
    import httpx

    from processes import free_port, start_process, stop_process
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "run", str(BUNDLED), "--host", demo_target,
                             "--web-port", str(port)], r"Starting web interface", timeout=30, merge_stderr=True,
                            env=read_env_file(BUNDLED / DEMO_SECRETS))
    try:
        # Locust logs the line just before its server binds.
        deadline = time.monotonic() + 10
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=10)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert page.status_code == 200 and "locust" in page.text.lower()
    finally:
        stop_process(proc)
