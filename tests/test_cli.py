"""The ``replay`` command as a user types it: bad input, inspect, schema, check, demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from traffic_replay.format import session_schema
from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from processes import REPO_ROOT, free_port

pytestmark = pytest.mark.timeout(90)


def replay(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def _one_error_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["run", "inspect"])
def test_bad_recordings_give_one_clear_line(command: str, tmp_path: Path) -> None:
    extra = ["--host", "http://127.0.0.1:9", "--headless"] if command == "run" else []
    missing = tmp_path / "missing"
    _one_error_line(replay(command, str(missing), *extra), str(missing), "no such directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error_line(replay(command, str(empty), *extra), str(empty), "no session files")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.json").write_text('{"hello": "world"}')
    _one_error_line(replay(command, str(bad), *extra), str(bad / "notes.json"), "field")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = replay("--debug", "inspect", str(tmp_path / "missing"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_a_bad_setting_is_named() -> None:
    _one_error_line(replay("run", "recordings", "--host", "ftp://x"), "host", "REPLAY_HOST")
    _one_error_line(replay("run", "recordings", "--host", "http://127.0.0.1:9", "--speed", "-1"), "speed")


@pytest.mark.parametrize(("flags", "expected"), [
    (["--session-key", "ip"], ["session_key", "REPLAY_SESSION_KEY", "'ip' is not 'client'"]),
    (["--session-key", "cookie:bad,name"], ["session_key", "not a valid cookie name"]),
    (["--allow-host", "http://shop.test"], ["allow_host", "not a host name"]),
    (["--exclude", "("], ["exclude", "'(' is not a regular expression"]),
    (["--mode", "upstream:ftp://proxy"], ["mode", "upstream:http(s)://PROXY"]),
    (["--max-session", "0"], ["max_session"]),
])
def test_a_bad_recording_setting_is_refused_before_mitmproxy_starts(flags: list[str], expected: list[str],
                                                                    tmp_path: Path) -> None:
    _one_error_line(replay("record", str(tmp_path / "rec"), "--listen-port", "0", *flags), *expected)
    assert not (tmp_path / "rec").exists()


def test_inspect_shows_sessions_and_endpoints() -> None:
    result = replay("inspect", "recordings")
    assert result.returncode == 0, result.stderr
    for text in ("browse catalogue", "shop via the API", "search and log in", "sell an item", "/items/{id}", "POST",
                 "weight", "correlations", "JSON listing.id"):
        assert text in result.stdout
    report = orjson.loads(replay("inspect", "recordings", "--json").stdout)
    assert {s["name"]: s["weight"] for s in report["sessions"]} == {
        "browse catalogue": 5, "shop via the API": 3, "search and log in": 2, "sell an item": 2}
    assert report["total_requests"] == sum(s["requests"] for s in report["sessions"])
    assert any(e["name"] == "/api/cart" and e["method"] == "POST" for e in report["endpoints"])


def test_schema_prints_the_session_schema() -> None:
    result = replay("schema")
    assert result.returncode == 0
    assert orjson.loads(result.stdout) == orjson.loads(orjson.dumps(session_schema()))


def test_check_reports_status_and_latency(demo_target: str) -> None:
    result = replay("check", "--host", demo_target, "recordings")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("ok  GET ") and " ms" in line for line in lines)


def test_a_wrong_host_fails_fast_with_one_line() -> None:
    port = free_port()
    started = time.monotonic()
    demo_password = read_env_file(REPO_ROOT / "recordings" / DEMO_SECRETS)  # else the run refuses before the check
    line = _one_error_line(replay("run", "recordings", "--host", f"http://127.0.0.1:{port}", "--headless",
                                  env=demo_password), f"127.0.0.1:{port}", "cannot connect")
    assert time.monotonic() - started < 10, line
    _one_error_line(replay("check", "--host", f"http://127.0.0.1:{port}"), "cannot connect")


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["one process", "two processes"])
def test_demo_replays_the_bundled_recordings(tmp_path: Path, processes: list[str]) -> None:
    summary_file = tmp_path / "summary.json"
    result = replay("demo", "-t", "4s", "-u", "5", "--summary-json", str(summary_file), *processes, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo target listening on http://127.0.0.1:" in result.stderr
    assert "Aggregated" in result.stdout
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["total"]["requests"] > 0 and summary["total"]["failures"] == 0
    assert summary["sessions"]["started"] > 0
    if processes:
        assert summary["workers"]["took_part"] == 2 and all(n > 0 for n in summary["workers"]["requests"])
    else:
        assert summary["workers"] is None


def test_sigterm_stops_the_demo_and_everything_it_started() -> None:
    import signal
    import socket

    from processes import start_process, stop_process

    proc, match = start_process([sys.executable, "-m", "traffic_replay.cli", "demo", "-t", "60s"],
                                r"demo target listening on http://127.0.0.1:(\d+)", timeout=30, merge_stderr=True)
    try:
        time.sleep(3)  # Locust is running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) != 0
    finally:
        stop_process(proc)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=2).close()


def _commands() -> list[str]:
    import typer.main

    from traffic_replay.cli import app
    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["", *_commands()])
def test_every_command_s_help_is_printed(command: str) -> None:
    # A help text is rich markup: "p99[/api/orders/{id}]" in one was read as a closing tag, and
    # `replay run --help` was an internal error.
    result = replay(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: replay {command}".rstrip() in result.stdout and result.stderr == ""
