"""The command line's own bad input: one line each, the right exit code, before anything starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

RECORDINGS = str(REPO_ROOT / "recordings")


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=40, cwd=REPO_ROOT)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port with a listener on it (ours, closed after the test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", result.stdout
    return lines[0]


@pytest.mark.parametrize(("args", "line"), [
    (["run", RECORDINGS, "--bogus"],
     "error: No such option: --bogus (Possible options: --host) (see replay run --help)"),
    (["bogus"], "error: No such command 'bogus'. (see replay --help)"),
    (["run", RECORDINGS, "-u", "many"], "error: Invalid value for '-u' / '--users': "),
    (["run", RECORDINGS, "--host", "ftp://x"], "error: setting 'host' (--host, REPLAY_HOST): 'ftp://x' is not an "
                                                "http(s) URL"),
    (["run", RECORDINGS, "--host", "http://127.0.0.1:9", "-t", "10x"],
     "error: setting 'run_time' (--run-time, REPLAY_RUN_TIME): '10x' is not a duration: write e.g. 90, 30s, 5m or "
     "1h30m"),
    (["run", RECORDINGS, "--host", "http://127.0.0.1:9", "-t", "0s"],
     "error: setting 'run_time' (--run-time, REPLAY_RUN_TIME): '0s': a run must last at least a second"),
    (["run", str(REPO_ROOT / "README.md"), "--host", "http://127.0.0.1:9"], f"error: {REPO_ROOT / 'README.md'}: "
                                                                             "not a directory"),
])
def test_bad_flags_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    result = replay(*args)
    assert result.returncode == 2
    assert one_line(result).startswith(line)


@pytest.mark.parametrize(("flags", "named"), [
    (["--web-port"], "--web-port"),
    (["--headless", "--master", "--master-bind-port"], "--master-bind-port"),
    (["--headless", "--prometheus-port"], "--prometheus-port"),
])
def test_a_port_in_use_is_one_line_before_the_run(taken: int, flags: list[str], named: str) -> None:
    result = replay("run", RECORDINGS, "--host", "http://127.0.0.1:9", "--no-check", *flags, str(taken))
    assert result.returncode == 2
    assert one_line(result) == f"error: {named} {taken} on 127.0.0.1: address in use"


def test_the_proxy_port_in_use_is_one_line_before_mitmproxy_starts(taken: int, tmp_path: Path) -> None:
    result = replay("record", str(tmp_path / "rec"), "--listen-port", str(taken))
    assert result.returncode == 2
    assert one_line(result) == f"error: --listen-port {taken} on 127.0.0.1: address in use"


def test_listening_on_every_interface_is_a_warning(taken: int, tmp_path: Path) -> None:
    # The port is taken (on loopback, which every interface includes): the warning, then the refusal, and
    # nothing ever listens beyond this machine.
    result = replay("record", str(tmp_path / "rec"), "--listen-host", "0.0.0.0", "--listen-port", str(taken))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "warning: the recording proxy listens on all interfaces (0.0.0.0): anyone who can reach this machine can "
        "use it; --listen-host 127.0.0.1 keeps it to this machine",
        f"error: --listen-port {taken} on 0.0.0.0: address in use"]


def test_plain_locust_without_a_target_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    entry = {"startedDateTime": "2026-01-02T10:00:00.000Z", "time": 5,
             "request": {"method": "GET", "url": "http://shop.example/a", "httpVersion": "HTTP/1.1", "headers": []},
             "response": {"status": 200, "statusText": "OK", "headers": [],
                          "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}}}
    (tmp_path / "a.har").write_text(json.dumps({"log": {"version": "1.2", "entries": [entry]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("REPLAY_HOST", "BASE_URL", "LOCUST_HOST")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config"), "REPLAY_RECORDINGS": str(tmp_path / "rec")}
    subprocess.run([sys.executable, "-m", "recorder.importer", str(tmp_path / "a.har"), "-o", str(tmp_path / "rec")],
                   capture_output=True, check=True, timeout=40, cwd=REPO_ROOT, env=env)
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "replayer/locustfile.py", "--headless", "-u", "1",
                           "-t", "1s"], capture_output=True, text=True, timeout=40, cwd=REPO_ROOT, env=env)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 2, done.stderr
    assert errors == ["error: no target: pass --host URL (or set REPLAY_HOST or BASE_URL)"], done.stderr


def test_plain_locust_with_a_bad_replay_variable_is_one_error_line_and_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "replayer/locustfile.py", "--headless", "-u", "1",
                           "-t", "1s"], capture_output=True, text=True, timeout=40, cwd=REPO_ROOT,
                          env={**os.environ, "REPLAY_HOST": "not a url", "REPLAY_RECORDINGS": RECORDINGS})
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert errors == ["error: setting 'host' (--host, REPLAY_HOST): 'not a url' is not an http(s) URL like "
                      "http://127.0.0.1:8000"], done.stderr
