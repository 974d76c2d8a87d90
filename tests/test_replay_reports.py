"""What a replay tells its user: missing secrets, divergences, unsourced values, per-user data, bad input.

Every test runs ``replay run`` as a user types it, against the demo target in its own
process, and checks what the target received, the summary (JSON and printed) and the exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from traffic_replay.demo.target import demo_items
from traffic_replay.format import Request, replace, write_session

from factories import answered, make_request, make_session
from processes import free_port, target_log

pytestmark = pytest.mark.timeout(120)

SECRET = "«redacted:0a1b2c3d»"
SECRET_ENV = "REPLAY_SECRET_0A1B2C3D"


def replay(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``replay ARGS`` as a user types it, with no ``REPLAY_*`` variables leaking in from the test run."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**clean, **(env or {})})


def _recording(tmp_path: Path, *requests: Request, name: str = "reported") -> Path:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(make_session(list(requests), id="reported", name=name), directory)
    return directory


def _run(recordings: Path, host: str, tmp_path: Path, *extra: str, users: int = 2, run_time: str = "3s",
         env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    summary = tmp_path / "summary.json"
    result = replay("run", str(recordings), "--host", host, "-u", str(users), "-r", str(users), "-t", run_time,
                    "--headless", "--speed", "0", "--no-check", "--summary-json", str(summary), *extra,
                    cwd=tmp_path, env=env)
    assert summary.is_file(), result.stdout[-2000:] + result.stderr[-3000:]
    return result, orjson.loads(summary.read_bytes())


def _json(path: str, document: dict[str, Any]) -> Request:
    return answered(make_request(path), orjson.dumps(document).decode(), "application/json")


# (a) secrets nobody supplied


def _secret_session(tmp_path: Path) -> Path:
    """Step 1 sends the secret in a header, step 2 in the query (percent-encoded, as the recorder writes it)."""
    in_query = "/api/items/2?key=%C2%ABredacted%3A0a1b2c3d%C2%BB"
    return _recording(tmp_path, replace(_json("/api/items/1", demo_items()[1].as_json()),
                headers=[("Host", "127.0.0.1:8000"), ("X-Api-Key", SECRET)]),
        replace(_json(in_query, demo_items()[2].as_json()), offset_ms=20.0), name="needs a key")


def test_a_secret_nobody_supplied_is_refused_before_anything_is_sent(demo_target: str, tmp_path: Path) -> None:
    result = replay("run", str(_secret_session(tmp_path)), "--host", demo_target, "-u", "1", "-t", "2s", "--headless",
                    "--speed", "0", "--summary-json", str(tmp_path / "summary.json"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert SECRET_ENV in line and "needs a key" in line and "--data-map" in line, line
    assert target_log(demo_target) == [], "not even the preflight check"
    assert not (tmp_path / "summary.json").exists(), "Locust never started"


def test_a_secret_supplied_from_the_environment_is_sent(demo_target: str, tmp_path: Path) -> None:
    result, summary = _run(_secret_session(tmp_path), demo_target, tmp_path, users=1, run_time="2s",
                           env={SECRET_ENV: "k"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["total"]["failures"] == 0 and summary["sessions"]["completed"] > 0
    paths = [e["path"] for e in target_log(demo_target)]
    assert "/api/items/1" in paths
    assert set(paths) == {"/api/items/1", "/api/items/2?key=k"}, "the secret's value stood where it was redacted"
    assert summary["unsourced"] == []


# (b) divergence report and unsourced values


def test_divergences_and_unsourced_values_are_reported(demo_target: str, tmp_path: Path) -> None:
    # The recording's answer had a token the live target never hands out; the next request sent it back.
    recorded_item = {**demo_items()[3].as_json(), "token": "tok12345678"}
    recordings = _recording(
        tmp_path, _json("/api/items/3", recorded_item),
        answered(make_request("/items/3", offset_ms=20.0, headers=[("Host", "127.0.0.1:8000"),
                                                                   ("X-Token", "tok12345678")]),
                 "<html><body>Item 3</body></html>", "text/html; charset=utf-8"),
        name="token journey")
    result, summary = _run(recordings, demo_target, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # statuses matched: a divergence is not a failure
    assert summary["total"]["failures"] == 0
    assert {e["path"] for e in target_log(demo_target)} == {"/api/items/3", "/items/3"}

    [divergence] = summary["divergences"]
    assert (divergence["session"], divergence["step"], divergence["method"], divergence["name"]) == (
        "token journey", 1, "GET", "/api/items/{id}")
    assert divergence["what"].startswith("JSON keys differ") and "token" in divergence["what"], divergence
    assert divergence["occurrences"] > 0

    [unsourced] = summary["unsourced"]
    assert (unsourced["session"], unsourced["step"], unsourced["value"]) == ("token journey", 2, "tok12345678")
    assert unsourced["occurrences"] >= summary["sessions"]["completed"] > 0

    out = result.stdout
    assert "Divergences from the recording" in out and "JSON keys differ" in out and "token journey" in out
    assert "recorded value sent again without a live source" in out and "tok12345678" in out


# (c) per-user data


def test_each_virtual_user_sends_its_own_data_row(demo_target: str, tmp_path: Path) -> None:
    recordings = _recording(tmp_path, _json("/api/items?q=recorded-term", {"items": [], "page": 1, "total": 0}),
                            name="search")
    rows = tmp_path / "terms.csv"
    rows.write_text("term\n" + "".join(f"q{i}\n" for i in range(1, 6)))
    result, summary = _run(recordings, demo_target, tmp_path, "--data", str(rows), "--data-map", "term=recorded-term",
                           users=5, run_time="3s")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["total"]["failures"] == 0 and summary["unsourced"] == []
    seen = [e["path"] for e in target_log(demo_target)]
    assert seen and all(urlsplit(p).path == "/api/items" for p in seen)
    terms = [dict(parse_qsl(urlsplit(p).query)).get("q") for p in seen]
    assert "recorded-term" not in terms, "the recorded value never goes out when a column replaces it"
    assert set(terms) == {"q1", "q2", "q3", "q4", "q5"}, "five users, five rows, each user its own"


# (d) bad input: one clear line


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (extra flags, what the error line must name)."""
    broken_rules = tmp_path / "broken-rules.toml"
    broken_rules.write_text('[[rule]\nname = "csrf"\n')
    missing = tmp_path / "no-such-users.csv"
    return {
        "missing data file": (["--data", str(missing), "--data-map", "user=lin"], str(missing)),
        "data map without =": (["--data", str(_users_csv(tmp_path)), "--data-map", "user"], "--data-map"),
        "rules syntax error": (["--rules", str(broken_rules)], str(broken_rules)),
        "map-host without =": (["--map-host", "api.example.com"], "--map-host"),
    }


def _users_csv(tmp_path: Path) -> Path:
    users = tmp_path / "users.csv"
    users.write_text("user\nu1\n")
    return users


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("case", ["missing data file", "data map without =", "rules syntax error",
                                  "map-host without ="])
def test_bad_input_gets_one_clear_error_line(case: str, dry_run: bool, tmp_path: Path) -> None:
    recordings = _recording(tmp_path, make_request("/api/items/1"))
    flags, named = _bad_input_cases(tmp_path)[case]
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens: bad input must stop the run before any request
    result = replay("run", str(recordings), "--host", host, "-u", "1", "-t", "2s", "--headless", "--no-check",
                    *flags, *(["--dry-run"] if dry_run else []), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error: ...' line, got {lines}"
    assert named in lines[0], lines[0]
