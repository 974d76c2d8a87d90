"""Start real processes for the tests and talk to them: shared by every fixture that needs one.

A process is ready when it prints a line matching a regex on stdout; until then the test
waits, and if the line never comes the failure shows the process's stderr.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


def start_process(
    args: Sequence[str],
    ready_line_regex: str | re.Pattern[str],
    timeout: float = 10.0,
    *,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
    merge_stderr: bool = False,
) -> tuple[subprocess.Popen[str], re.Match[str]]:
    """Start ``args`` and wait until a stdout line matches ``ready_line_regex``.

    Returns the process and the match. The process's stdout stays open (read on from
    ``proc.stdout`` if needed). ``merge_stderr`` reads stderr in the same stream, for
    programs that announce themselves there (mitmproxy, Locust). On timeout or early exit
    it is stopped and the test fails with its stderr.
    """
    pattern = re.compile(ready_line_regex)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # Namespace-package imports of the project from the repo root work without install.
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            line = proc.stdout.readline()
            if not line:  # EOF: the process has exited or closed stdout
                break
            seen.append(line)
            if match := pattern.search(line):
                return proc, match
    stop_process(proc)
    stderr = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(
        f"{list(args)} did not print a line matching {pattern.pattern!r} within {timeout}s "
        f"(exit code {proc.returncode})\n--- stdout ---\n{''.join(seen)}--- stderr ---\n{stderr}"
    )


def free_port() -> int:
    """A loopback port free right now (another process may take it; good enough for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interrupt(proc: subprocess.Popen[str]) -> str:
    """SIGINT (Ctrl-C), expect exit code 0, return everything it printed."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert proc.stdout is not None
    return proc.stdout.read()


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> int:
    """Terminate this one process by its PID, kill it if it lingers; return its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            try:
                stream.close()
            except OSError:
                pass
    return proc.returncode


def target_log(base_url: str) -> list[dict[str, Any]]:
    """What the demo target says reached it, oldest first (``GET /__log``)."""
    resp = httpx.get(f"{base_url}/__log", timeout=10)
    resp.raise_for_status()
    requests: list[dict[str, Any]] = resp.json()["requests"]
    return requests


def start_recorder(out: Path, *args: str, timeout: float = 30.0) -> tuple[subprocess.Popen[str], int]:
    """``replay record OUT`` on a free loopback port with ``args``, once it records: (process, proxy port).

    stderr is merged into stdout and left unread until the test reads it (``proc.stdout.read()``
    after the process ended), so its summary line can be checked.
    """
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "record", str(out), "--listen-port", str(port),
                             *args], r"recording sessions into", timeout=timeout, merge_stderr=True)
    return proc, port
