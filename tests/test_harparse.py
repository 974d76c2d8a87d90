"""A HAR parsed in a child process (``recorder.harparse``) gives what the in-process parse gives."""

from __future__ import annotations

import os
import pickle
import random
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from test_har import entry, firefox_har

from recorder import harparse
from recorder.har import HarFile
from recorder.harentry import Invalid
from recorder.importer import _har_item
from traffic_replay.errors import HarError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from big_har import entry as generated_entry  # noqa: E402

pytestmark = pytest.mark.timeout(30)

IN_PROCESS, CHILD = 1 << 62, 0


def odd_values() -> dict[str, object]:
    # What a round trip through orjson could get wrong: the edges of ints and floats, escapes, non-ASCII.
    return {"ints": [0, -1, 2**63 - 1, -(2**63) + 1],
            "floats": [0.1, -0.0, 1e-320, 5e-324, 1.7976931348623157e308, 1.0],
            "text": ["é ☃ 😀", "\u0000\t\n\"\\", "\\ud800"], "nested": {"a": None, "b": [True, False, {}, []]}}


def big_har(tmp_path: Path, pages_last: bool = False) -> Path:
    rng = random.Random(7)
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    entries: list[object] = [generated_entry(rng, i, f"page_{i // 500}", t0 + timedelta(milliseconds=50 * i))
                             for i in range(2000)]
    entries[3:3] = [entry("GET", "https://shop.example/", 200) | {"_extra": odd_values()}, 42, "not an entry", None]
    pages = [{"id": f"page_{i}", "title": f"Page {i}", "startedDateTime": t0.isoformat()} for i in range(4)]
    log: dict[str, object] = {"entries": entries, "pages": pages} if pages_last else {"pages": pages,
                                                                                        "entries": entries}
    path = tmp_path / "big.har"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps({"log": {"version": "1.2", **log}}, option=orjson.OPT_INDENT_2))
    return path


def parsed(path: Path, fork_from: int, with_pages: bool = True) -> tuple[list[object], HarFile]:
    har = HarFile(path, with_pages=with_pages, fork_from=fork_from)
    return list(har.entries()), har


@pytest.mark.parametrize("pages_last", [False, True])
def test_the_child_gives_the_entries_digest_and_pages_of_the_in_process_parse(tmp_path: Path,
                                                                               pages_last: bool) -> None:
    path = big_har(tmp_path, pages_last)
    assert path.stat().st_size > 1 << 20
    here, mine = parsed(path, IN_PROCESS)
    there, theirs = parsed(path, CHILD)
    assert there == here and len(here) == 2004
    # Equal is not enough for floats: -0.0 == 0.0, but not in a repr.
    assert repr(there) == repr(here)
    assert (theirs.digest, theirs.count, theirs.pages) == (mine.digest, mine.count, mine.pages)
    assert len(mine.pages) == 4 and mine.digest


@pytest.mark.parametrize("per", ["page", "file"])
def test_the_child_makes_the_import_s_items_as_the_in_process_parse_does(tmp_path: Path, per: str) -> None:
    path = big_har(tmp_path)
    made = []
    for fork_from in (IN_PROCESS, CHILD):
        har = HarFile(path, with_pages=False, fork_from=fork_from)
        made.append(list(har.entries(lambda e: _har_item(e, per))))  # type: ignore[arg-type]
    assert made[0] == made[1] and len(made[0]) == 2004
    assert {type(item).__name__ for _, item, _ in made[1]} == {"Captured", "Invalid"}
    # What is wrong with each invalid entry comes back from the child as it is said here.
    assert [item.what for _, item, _ in made[1] if isinstance(item, Invalid)] == [
        "the entry is 42, not an object", 'the entry is "not an entry", not an object',
        "the entry is null, not an object"]
    assert repr(made[0]) == repr(made[1])  # -0.0 and 0.0 are equal, their reprs are not


def test_small_files_are_parsed_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*args: object) -> object:
        raise AssertionError("forked for a small file")

    monkeypatch.setattr("recorder.har.child_items", no_child)
    assert len(parsed(firefox_har(tmp_path), harparse.BUFFER)[0]) == 8


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not valid JSON"), (b"GET / HTTP/1.1", "not valid JSON"), (b'{"log": {}}', "no log.entries list"),
    (b"[1, 2]", "no log.entries list"), (b'{"log": {"entries": ["\\udc80"]}}', "not valid JSON"),
    (b'{"log": {"entries": ["a\xff"]}}', "not valid JSON"), (b'{"log": {"entries": [1e400]}}', "overflow"),
])
def test_a_file_that_is_not_a_har_is_the_same_one_line_error_from_the_child(tmp_path: Path, content: bytes,
                                                                              message: str) -> None:
    path = tmp_path / "x.har"
    path.write_bytes(content)
    errors = []
    for fork_from in (IN_PROCESS, CHILD):
        with pytest.raises(HarError, match=message) as info:
            parsed(path, fork_from)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and errors[0].startswith(f"{path}: not a HAR file") and "\n" not in errors[0]


def test_a_cut_big_har_gives_the_entries_before_the_cut_then_the_same_error(tmp_path: Path) -> None:
    path = big_har(tmp_path)
    path.write_bytes(path.read_bytes()[:-5000])
    seen: list[list[object]] = []
    errors = []
    for fork_from in (IN_PROCESS, CHILD):
        har = HarFile(path, with_pages=False, fork_from=fork_from)
        got: list[object] = []
        with pytest.raises(HarError, match="not valid JSON") as info:
            got.extend(har.entries())
        seen.append(got)
        errors.append(str(info.value))
    assert seen[0] == seen[1] and len(seen[0]) > 1900
    assert errors[0] == errors[1] and "\n" not in errors[0]


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The PIDs of the children forked."""
    pids: list[int] = []
    fork = os.fork

    def recording_fork() -> int:
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(harparse.os, "fork", recording_fork)
    return pids


def test_a_child_that_dies_is_one_error_naming_the_file_and_is_reaped(tmp_path: Path, forked: list[int],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def dying(fh: object, prefix: str, convert: object, write_end: int) -> int:
        os.write(write_end, pickle.dumps({"a": 1}))
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    monkeypatch.setattr(harparse, "_child", dying)
    path = big_har(tmp_path)
    har = HarFile(path, with_pages=False, fork_from=CHILD)
    with pytest.raises(HarError) as info:
        list(har.entries())
    assert str(info.value) == (f"{path}: the HAR parser process was killed by SIGKILL before the end of the file")
    assert har.count == 1
    (pid,) = forked
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped


def test_a_parent_that_stops_early_terminates_the_child(tmp_path: Path, forked: list[int]) -> None:
    entries = HarFile(big_har(tmp_path), with_pages=False, fork_from=CHILD).entries()
    next(entries)
    (pid,) = forked
    time.sleep(0.2)  # the child has filled the pipe and waits on it
    entries.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # terminated and reaped
