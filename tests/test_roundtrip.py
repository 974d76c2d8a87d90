"""Record a session, replay it, and compare what the target saw both times."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from traffic_replay.format import load_recordings
from traffic_replay.redacted import PLACEHOLDER, secret_env_name

from processes import REPO_ROOT, free_port, start_process, stop_process, target_log

pytestmark = pytest.mark.timeout(90)

JOURNEY: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/items/5", {}),
    ("POST", "/login", {"data": {"username": "ada", "password": "demo"}}),
    ("GET", "/account", {}),
    ("POST", "/api/cart", {"json": {"item_id": 5, "qty": 2}}),
    ("GET", "/api/cart", {}),
    ("POST", "/logout", {}),
]
PAUSE = 0.25


def _seen(entries: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["method"], e["path"], e["body"], e["status"], e["user"]) for e in entries]


def test_what_the_target_saw_is_the_same_when_replayed(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    port = free_port()
    recorder, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "record", str(out),
                                 "--listen-port", str(port)], r"recording sessions into", timeout=30,
                                merge_stderr=True)
    try:
        with httpx.Client(base_url=demo_target, proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for method, path, kwargs in JOURNEY:
                client.request(method, path, **kwargs)  # type: ignore[arg-type]
                time.sleep(PAUSE)
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(30) == 0
    finally:
        stop_process(recorder)
    recorded = target_log(demo_target)
    assert [(e["method"], e["path"]) for e in recorded] == [(m, p) for m, p, _ in JOURNEY]
    httpx.post(f"{demo_target}/__reset", trust_env=False).raise_for_status()

    # The recorder redacted the password; the replay supplies it, as a user would.
    [session] = load_recordings(out)
    login = next(r for r in session.requests if r.path == "/login")
    assert login.body is not None
    password = dict(parse_qsl(login.body.data))["password"]
    assert PLACEHOLDER.fullmatch(password)
    secret = {secret_env_name(password): "demo"}
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(out), "--host", demo_target,
                             "-u", "1", "-r", "1", "-t", "4s", "--headless", "--no-check"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env={**os.environ, **secret})
    assert result.returncode == 0, result.stderr[-3000:]
    replayed = target_log(demo_target)
    n = len(recorded)
    assert len(replayed) >= n, "at least one whole session was replayed in 4 s at speed 1"
    # Same requests, bodies, answers and logged-in user, cycle after cycle.
    assert _seen(replayed) == [_seen(recorded)[i % n] for i in range(len(replayed))]
    # Same think time: the gaps between arrivals follow the recording.
    for i in range(1, n):
        recorded_gap = recorded[i]["t"] - recorded[i - 1]["t"]  # type: ignore[operator]
        replayed_gap = replayed[i]["t"] - replayed[i - 1]["t"]  # type: ignore[operator]
        assert abs(replayed_gap - recorded_gap) < 0.15, (i, recorded_gap, replayed_gap)
