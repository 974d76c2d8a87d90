"""Issue 12: a recordings directory with bad session files. Strict by default (the run stops, each bad
file one line); ``--skip-bad`` runs the good ones, names each bad one once on stderr and counts it in
the summary, ``inspect --json`` and a distributed run's master summary. Real CLI processes, a real
target on 127.0.0.1, real files of every bad kind (a FIFO, a symlink loop, a directory named x.json).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from traffic_replay.errors import RecordingError, RecordingsInvalid
from traffic_replay.format import read_recordings, write_session

from factories import make_request, make_session
from processes import REPO_ROOT, free_port, stop_process, target_log

pytestmark = pytest.mark.timeout(60)

BUNDLED = REPO_ROOT / "recordings"
GOOD = next(p for p in sorted(BUNDLED.glob("*.json")) if b'"name":"browse catalogue"' in p.read_bytes())
"""A bundled session that needs no secret: its requests are the only ones a skip-bad run may send."""
GOOD_PATHS = {"/", "/items", "/items?page=2", "/items/17", "/api/items/17", "/items/23"}


def _document() -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(GOOD.read_bytes())
    return document


def _json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = _document()
    change(document)
    path.write_bytes(orjson.dumps(document))


def _wrong_type(d: dict[str, Any]) -> None:
    d["requests"][0]["port"] = "8000"


def _missing(d: dict[str, Any]) -> None:
    del d["started_at"]


def _version(d: dict[str, Any]) -> None:
    d["format_version"] = 2


BAD: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: p.write_bytes(GOOD.read_bytes()[:200]), "not valid JSON: Input data was truncated"),
    "utf8": (lambda p: p.write_bytes(GOOD.read_bytes().replace(b"browse catalogue", b"browse \xff\xfe")),
             "not valid JSON: Invalid UTF-8 encoded string"),
    "types": (lambda p: _json(p, _wrong_type), "field 'requests.0.port': Expected `int`, got `str`"),
    "missing": (lambda p: _json(p, _missing), "field 'started_at': missing"),
    "version": (lambda p: _json(p, _version),
                "field 'format_version': 2 is not a format this traffic-replay reads (it reads 1)"),
    "loop": (lambda p: p.symlink_to(p.name), "a symbolic link loop (too many levels of symbolic links)"),
    "fifo": (lambda p: os.mkfifo(p), "a named pipe (FIFO), not a session file"),
    "directory": (lambda p: p.mkdir(), "a directory, not a session file"),
    "device": (lambda p: p.symlink_to("/dev/zero"), "a device, not a session file"),
}


def mixed(directory: Path, kinds: list[str] | None = None) -> dict[Path, str]:
    """The good session and one bad file of each kind in ``directory``; each bad path and its message."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(GOOD, directory / GOOD.name)
    problems = {}
    for kind in kinds or list(BAD):
        make, message = BAD[kind]
        make(directory / f"{kind}.json")
        problems[directory / f"{kind}.json"] = message
    return problems


def replay(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT,
           timeout: float = 40) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**clean, **(env or {})})


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_kind_is_one_line_naming_the_file_and_what_is_wrong(tmp_path: Path, kind: str) -> None:
    ((path, message),) = mixed(tmp_path, [kind]).items()
    with pytest.raises(RecordingsInvalid) as info:
        read_recordings(tmp_path)  # strict: a FIFO must not block it, a device must not read forever
    assert info.value.lines() == [f"{path}: {message}"]
    recordings = read_recordings(tmp_path, skip_bad=True)
    assert [s.name for s in recordings.sessions] == ["browse catalogue"]
    assert [str(e) for e in recordings.skipped] == [f"{path}: {message}"]


def test_strict_by_default_inspect_stops_with_one_line_per_bad_file(tmp_path: Path) -> None:
    problems = mixed(tmp_path)
    result = replay("inspect", str(tmp_path), "--json")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {p}: {m}" for p, m in sorted(problems.items())]


def test_inspect_skip_bad_names_each_bad_file_once_and_counts_it(tmp_path: Path) -> None:
    problems = mixed(tmp_path)
    result = replay("inspect", str(tmp_path), "--json", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"skipped: {p}: {m}" for p, m in sorted(problems.items())]
    report = orjson.loads(result.stdout)
    assert [s["name"] for s in report["sessions"]] == ["browse catalogue"] and report["total_requests"] == 6
    assert {(f["path"], f["problem"]) for f in report["skipped_files"]} == {(str(p), m) for p, m in problems.items()}
    table = replay("inspect", str(tmp_path), env={"REPLAY_SKIP_BAD": "1"})  # the variable does what the flag does
    assert table.returncode == 0 and f"{len(problems)} bad session files skipped (--skip-bad)" in table.stdout
    assert len(table.stderr.splitlines()) == len(problems)


def test_inspect_reading_over_the_cores_refuses_and_skips_as_one_process_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``replay inspect DIR`` reads each file where it analyses it, in forked children for a big directory:
    the same errors, in the same order, as ``read_recordings``."""
    from traffic_replay import fanout
    from traffic_replay.inspection import inspect_directory, inspect_sessions

    problems = mixed(tmp_path)
    shutil.copy(GOOD, tmp_path / "zz-good-again.json")
    with pytest.raises(RecordingsInvalid) as strict:
        read_recordings(tmp_path)
    monkeypatch.setattr(fanout, "FORK_FROM", 0)
    with pytest.raises(RecordingsInvalid) as spread:
        inspect_directory(tmp_path)
    assert spread.value.lines() == strict.value.lines() and len(strict.value.lines()) == len(problems)
    recordings = read_recordings(tmp_path, skip_bad=True)
    report, skipped = inspect_directory(tmp_path, skip_bad=True)
    assert [str(e) for e in skipped] == [str(e) for e in recordings.skipped]
    assert report.to_json() == inspect_sessions(recordings.sessions, skipped=recordings.skipped).to_json()
    assert len(report.sessions) == 2


def test_a_directory_of_only_bad_files_is_still_one_error(tmp_path: Path) -> None:
    mixed(tmp_path)
    (tmp_path / GOOD.name).unlink()
    for args in (["inspect", str(tmp_path), "--skip-bad"],
                 ["run", str(tmp_path), "--skip-bad", "--host", "http://127.0.0.1:9", "--headless", "--no-check"]):
        result = replay(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: {tmp_path}: every session file is bad ({len(BAD)}), e.g. {tmp_path / 'device.json'}: "
            f"{BAD['device'][1]}"], result.stderr
    with pytest.raises(RecordingError, match="every session file is bad"):
        read_recordings(tmp_path, skip_bad=True)


def test_run_skip_bad_replays_the_good_sessions_and_counts_the_skipped_files(demo_target: str,
                                                                           tmp_path: Path) -> None:
    problems = mixed(tmp_path / "rec")
    summary = tmp_path / "summary.json"
    strict = replay("run", str(tmp_path / "rec"), "--host", demo_target, "--headless", "-t", "2s", "--no-check")
    assert strict.returncode == 2 and len(strict.stderr.splitlines()) == len(problems), strict.stderr
    assert target_log(demo_target) == [], "a strict run sends nothing"
    result = replay("run", str(tmp_path / "rec"), "--skip-bad", "--host", demo_target, "--headless", "-u", "2",
                    "-r", "2", "-t", "3s", "--speed", "0", "--no-check", "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr[-3000:]
    skipped_lines = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert skipped_lines == [f"skipped: {p}: {m}" for p, m in sorted(problems.items())]  # once each, at the start
    assert "Traceback" not in result.stderr
    sent = {e["path"] for e in target_log(demo_target)}
    assert sent == GOOD_PATHS, "every request of the good session, nothing of the bad files"
    written = orjson.loads(summary.read_bytes())
    assert {(f["path"], f["problem"]) for f in written["skipped_files"]} == {(str(p), m) for p, m in problems.items()}
    assert written["sessions"]["completed"] > 0
    assert f"session files skipped as bad (--skip-bad): {len(problems)}" in result.stdout + result.stderr


def test_a_distributed_run_replays_what_the_master_chose(demo_target: str, tmp_path: Path) -> None:
    """The master loads with --skip-bad and ships only the good sessions; a worker started in an empty
    directory with REPLAY_SKIP_BAD=0 reads nothing of its own and replays them, and the master's summary
    counts the skipped files."""
    problems = mixed(tmp_path / "rec", ["truncated", "fifo", "version"])
    port, summary = free_port(), tmp_path / "summary.json"
    empty = tmp_path / "worker"
    empty.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    with (tmp_path / "master.log").open("wb") as log:
        master = subprocess.Popen(
            [sys.executable, "-m", "traffic_replay.cli", "run", str(tmp_path / "rec"), "--skip-bad", "--master",
             "--expect-workers", "1", "--master-bind-port", str(port), "--host", demo_target, "--headless",
             "-u", "2", "-r", "2", "-t", "4s", "--speed", "0", "--no-check", "--summary-json", str(summary)],
            cwd=REPO_ROOT, env=clean, stdout=log, stderr=subprocess.STDOUT)
    with (empty / "log.txt").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "traffic_replay.cli", "run", "--worker", "--master-port",
                                   str(port)], cwd=empty, env={**clean, "REPLAY_SKIP_BAD": "0"}, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        assert master.wait(50) == 0, (tmp_path / "master.log").read_text()[-3000:]
    finally:
        stop_process(master)
        stop_process(worker)
    master_log, worker_log = (tmp_path / "master.log").read_text(), (empty / "log.txt").read_text()
    assert [line for line in master_log.splitlines() if line.startswith("skipped: ")] == [
        f"skipped: {p}: {m}" for p, m in sorted(problems.items())]
    assert "skipped: " not in worker_log and "Traceback" not in worker_log + master_log
    written = orjson.loads(summary.read_bytes())
    assert len(written["skipped_files"]) == len(problems)
    assert written["workers"]["took_part"] == 1 and written["workers"]["requests"][0] > 0
    assert {e["path"] for e in target_log(demo_target)} == GOOD_PATHS


def test_an_enormous_body_loads_in_memory_bounded_by_twice_the_file(tmp_path: Path) -> None:
    """A 48 MiB body, text and binary: the file's bytes and the decoded text at most, not a third copy."""
    for kind, body, content_type in (("text", b"x" * (48 << 20), "text/plain"),
                                     ("binary", bytes(range(256)) * (48 << 12), "application/octet-stream")):
        directory = tmp_path / kind
        directory.mkdir()
        path = write_session(make_session([make_request(body=body, content_type=content_type)]), directory)
        del body
        size = path.stat().st_size
        tracemalloc.start()
        try:
            (session,) = read_recordings(directory, skip_bad=True).sessions
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert session.requests[0].body is not None and session.requests[0].body.size == 48 << 20
        assert peak < 2.2 * size, f"{kind}: peak {peak / size:.2f}x the file's size"
