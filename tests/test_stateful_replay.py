"""Stateful sessions replayed live: CSRF, created ids and bearer tokens, per-user data.

Recorded through the real recorder (``scripts/record_demo.py``), replayed by the real
Locust through ``replay run``, checked from the demo target's own log.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
import pytest

from traffic_replay.format import load_recordings

from processes import REPO_ROOT, target_log

pytestmark = pytest.mark.timeout(180)

USERS = 50


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo journeys, recorded through ``replay record`` by the script that makes the bundle."""
    out = tmp_path_factory.mktemp("recorded")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "record_demo.py"), str(out)],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    yield out


def _data_file(directory: Path, tmp_path: Path) -> list[str]:
    """One account per virtual user; the password column replaces whatever was recorded (redacted or not)."""
    [sell] = [s for s in load_recordings(directory) if s.name == "sell an item"]
    signin = next(r for r in sell.requests if r.method == "POST" and r.path == "/signin")
    assert signin.body is not None
    recorded = dict(parse_qsl(signin.body.data))
    users = tmp_path / "users.csv"
    users.write_text("username,password\n" + "".join(f"user{i:02},demo\n" for i in range(USERS)))
    return ["--data", str(users), "--data-map", f"username={recorded['username']}",
            "--data-map", f"password={recorded['password']}"]


def _replay(directory: Path, host: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, object]]:
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(directory), "--host", host, "-u", str(USERS),
         "-r", str(USERS), "-t", "8s", "--headless", "--speed", "0", "--no-check", "--summary-json", str(summary),
         *extra], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert summary.is_file(), result.stderr[-3000:]
    return result.returncode, orjson.loads(summary.read_bytes())


def test_fifty_users_each_log_in_create_and_open_their_own_item(recorded: Path, demo_target: str,
                                                              tmp_path: Path) -> None:
    code, summary = _replay(recorded, demo_target, tmp_path, *_data_file(recorded, tmp_path))
    assert code == 0, summary["failures"]
    assert summary["total"]["failures"] == 0 and summary["divergences"] == []  # type: ignore[index]
    assert summary["sessions"]["failed"] == 0 and summary["sessions"]["completed"] > USERS  # type: ignore[index]
    seen = target_log(demo_target)
    # Each virtual user logged in with its own account and session.
    sellers = {e["user"] for e in seen if e["path"] == "/sell"}
    assert {e["status"] for e in seen if e["path"] == "/sell"} == {200}
    assert len(sellers) >= USERS // 2 and all(str(u).startswith("user") for u in sellers)
    # Each created item was opened by its own id, by the user who created it, and no one else.
    opened: defaultdict[str, set[object]] = defaultdict(set)
    for e in seen:
        if e["path"].startswith("/api/listings/"):
            assert e["status"] == 200, e
            opened[e["path"]].add(e["user"])
    created = sum(1 for e in seen if e["path"] == "/api/listings" and e["status"] == 201)
    assert created > USERS and len(opened) >= created - USERS  # a few may be cut short by the end of the run
    assert all(len(users) == 1 for users in opened.values())
    assert {e["status"] for e in seen if e["path"] == "/api/me"} == {200}


def test_the_same_replay_without_correlation_fails(recorded: Path, demo_target: str, tmp_path: Path) -> None:
    code, summary = _replay(recorded, demo_target, tmp_path, "--no-correlate", *_data_file(recorded, tmp_path))
    assert code == 1
    failures = {f["name"]: f["error"] for f in summary["failures"]}  # type: ignore[attr-defined]
    assert "status 403, recorded 3xx" in failures["/signin"]
    [divergence] = [d for d in summary["divergences"] if d["session"] == "sell an item"]  # type: ignore[attr-defined]
    assert (divergence["step"], divergence["name"], divergence["what"]) == (2, "/signin", "status 403, recorded 302")
    statuses = Counter(e["status"] for e in target_log(demo_target) if e["path"] == "/signin" and e["method"] == "POST")
    assert set(statuses) == {403}
