"""The crash journal on its own (files read back from tmp_path), and the addon's use of it (taddons)."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import orjson
import pytest
from flows import timed_flow
from mitmproxy import exceptions
from mitmproxy.test import taddons

from recorder.addon import Recorder
from recorder.journal import JOURNAL_DIR, Journal, Spilled, read_journal, recover
from recorder.journal import main as journal_main
from recorder.records import ResponseData, body_data
from recorder.sessionizer import Closed, Exchange, Sessionizer
from traffic_replay.errors import JournalError
from traffic_replay.format import load_recordings, write_session

pytestmark = pytest.mark.timeout(30)

CLIENT = ("127.0.0.1", "test/1.0")


def exchange(path: str, started: float, body: bytes | None = None) -> Exchange:
    return Exchange(
        started=started, request_end=started + 0.001, finished=started + 0.01, method="POST" if body else "GET",
        scheme="http", host="127.0.0.1", port=8000, path=path, http_version="HTTP/1.1",
        headers=[("Host", "127.0.0.1:8000"), ("X-Dup", "1"), ("X-Dup", "2")],
        body=body_data(body, "application/octet-stream") if body else None,
        response=ResponseData(status=200, reason="OK", headers=[("Content-Type", "application/json")], duration_ms=9.0,
                              body=body_data(b'{"ok": true}', "application/json")),
    )


def crash(journal: Journal) -> None:
    """What kill -9 leaves: the file as written, its lock dropped, nothing deleted."""
    journal._close_fd()


def journals(directory: Path) -> list[Path]:
    return sorted((directory / JOURNAL_DIR).glob("*.jsonl"))


def test_every_exchange_is_a_line_on_disk_as_it_is_appended(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("s1", CLIENT, exchange("/a", 100.0, body=b"\x00\xff binary"))
    lines = journals(tmp_path)[0].read_bytes().splitlines()
    assert orjson.loads(lines[0])["journal"] == 2
    assert orjson.loads(lines[1])["s"] == "s1"
    contents = read_journal(journals(tmp_path)[0])
    assert contents.exchanges["s1"] == [exchange("/a", 100.0, body=b"\x00\xff binary")]
    crash(journal)


def test_an_import_s_journal_writes_in_batches_and_reads_back_what_it_holds(tmp_path: Path) -> None:
    journal = Journal(tmp_path, batch=1 << 20)
    wheres = [journal.append("s1", CLIENT, exchange(f"/{i}", 100.0 + i)) for i in range(3)]
    assert journals(tmp_path)[0].read_bytes() == b""  # held: not even the header is written yet
    # Reading back (a session being written) sends what is held first: the offsets count it.
    assert [orjson.loads(journal.read(*where))["path"] for where in wheres] == ["/0", "/1", "/2"]
    journal.append("s2", CLIENT, exchange("/3", 103.0))
    journal.close()  # kept (nothing written) and complete
    assert sum(len(x) for x in read_journal(journals(tmp_path)[0]).exchanges.values()) == 4


def test_a_killed_recorder_s_sessions_are_recovered_as_the_sessionizer_grouped_them(tmp_path: Path) -> None:
    written: list[Closed] = []
    journal = Journal(tmp_path)
    sessionizer = Sessionizer(5.0, written.append)
    alice, bob = ("10.0.0.1", "alice"), ("10.0.0.2", "bob")
    feed = [(alice, exchange("/a1", 100.0)), (bob, exchange("/b1", 100.5)), (alice, exchange("/a2", 101.0)),
            (alice, exchange("/a3", 120.0))]  # the idle gap closes alice's first session here
    for client, x in feed:
        journal.append(sessionizer.add(client, x), client, x)
        for closed in written:  # as the recorder does once a file is written
            write_session(closed.session(), tmp_path)
            journal.written(closed.id)
        written.clear()
    crash(journal)
    assert [p.name for p in tmp_path.glob("*.json")] != []

    report = recover(tmp_path)
    paths = {tuple(r.path for r in s.requests) for s in load_recordings(tmp_path)}
    assert paths == {("/a1", "/a2"), ("/b1",), ("/a3",)}
    assert report.exchanges == 2 and len(report.sessions) == 2 and report.skipped_written == 1
    assert journals(tmp_path) == []
    # Idempotent: nothing left to do, nothing duplicated.
    assert recover(tmp_path).journals == 0
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_merged_sessions_recover_as_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    sessionizer = Sessionizer(30.0, lambda s: None)
    sessionizer.on_merge = journal.merged
    anon, user = CLIENT, ("cookie", "sid", "u1")
    x1, x2, x3 = exchange("/login", 100.0), exchange("/other", 100.2), exchange("/login-post", 101.0)
    journal.append(sessionizer.add(anon, x1), CLIENT, x1)
    journal.append(sessionizer.add(user, x2, CLIENT), CLIENT, x2)
    journal.append(sessionizer.add(user, x3, CLIENT, adopt=anon), CLIENT, x3)  # the login response set the cookie
    crash(journal)
    recover(tmp_path)
    assert [[r.path for r in s.requests] for s in load_recordings(tmp_path)] == [["/login", "/other", "/login-post"]]


def test_a_line_cut_short_by_the_crash_is_counted_and_the_rest_recovered(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("s1", CLIENT, exchange("/a", 100.0))
    journal.append("s1", CLIENT, exchange("/b", 101.0))
    crash(journal)
    path = journals(tmp_path)[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last write() was cut
    report = recover(tmp_path)
    assert report.damaged_lines == 1 and report.exchanges == 1
    assert [r.path for r in load_recordings(tmp_path)[0].requests] == ["/a"]


def test_a_version_1_journal_line_is_still_recovered(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    crash(journal)
    assert journal.path is not None
    old = exchange("/old", 100.0)
    x = {**old._asdict(), "body": None, "response": {**old.response._asdict(), "body": old.response.body._asdict()}}
    with journal.path.open("ab") as fh:  # the layout before the timing moved out of "x"
        fh.write(orjson.dumps({"s": "20260101T000000-0ld00001", "c": CLIENT, "x": x}) + b"\n")
    assert recover(tmp_path).exchanges == 1
    assert [r.path for r in load_recordings(tmp_path)[0].requests] == ["/old"]


def test_a_journal_held_by_a_live_recorder_is_left_alone(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.append("s1", CLIENT, exchange("/a", 100.0))
    assert recover(tmp_path).journals == 0
    assert list(tmp_path.glob("*.json")) == [] and len(journals(tmp_path)) == 1
    crash(live)


def test_the_journal_is_deleted_once_every_session_is_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = journals(tmp_path)
    journal.append("s1", CLIENT, exchange("/a", 100.0))
    journal.append("s2", CLIENT, exchange("/b", 100.0))
    journal.written("s1")
    assert journals(tmp_path) == first  # s2 is still open
    journal.written("s2")
    assert journals(tmp_path) != first and len(journals(tmp_path)) == 1  # rotated: a fresh, empty one
    journal.close()
    assert journals(tmp_path) == []


def test_closing_with_an_unwritten_session_keeps_the_journal_for_recovery(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("s1", CLIENT, exchange("/a", 100.0))
    journal.close()
    assert recover(tmp_path).exchanges == 1


def test_an_unusable_journal_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_DIR).write_text("a file where the journal directory goes")
    with pytest.raises(JournalError, match=r"\.journal: cannot create the crash journal"):
        Journal(tmp_path)


def test_a_full_disk_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(JournalError, match="cannot write the crash journal: No space left on device"):
        journal.append("s1", CLIENT, exchange("/a", 100.0))
    monkeypatch.undo()
    crash(journal)


# --- the addon --------------------------------------------------------------------------



def test_the_addon_journals_each_flow_and_recovers_at_start(tmp_path: Path) -> None:
    killed = Recorder()
    with taddons.context(killed) as tctx:
        tctx.configure(killed, replay_dir=str(tmp_path))
        killed.response(timed_flow(b"/one", 100.0))
        killed.response(timed_flow(b"/two", 101.0))
        assert killed.pipeline.journal is not None
        crash(killed.pipeline.journal)  # no done(): the process died
    assert list(tmp_path.glob("*.json")) == []

    restarted = Recorder()
    with taddons.context(restarted) as tctx:
        tctx.configure(restarted, replay_dir=str(tmp_path))
        restarted.open_journal()  # what running() does
        assert [r.path for r in load_recordings(tmp_path)[0].requests] == ["/one", "/two"]
        restarted.pipeline.finish()
    assert journals(tmp_path) == []


def test_a_journal_write_failure_stops_the_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        stopped: list[bool] = []
        monkeypatch.setattr(tctx.master, "shutdown", lambda: stopped.append(True))
        monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
        recorder.response(timed_flow(b"/a", 100.0))
        monkeypatch.undo()
        assert recorder.pipeline.journal_failed and stopped == [True]
        # What it had is still written out at the end, and the exit is not a success.
        with pytest.raises(SystemExit) as exit_info:
            tctx.master.event_loop.run_until_complete(recorder.done())
        assert exit_info.value.code == 1
    assert [r.path for r in load_recordings(tmp_path)[0].requests] == ["/a"]


def test_a_journal_fsync_option_must_be_seconds(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError, match="replay_journal_fsync"):
            tctx.configure(recorder, replay_journal_fsync="often")
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_journal_fsync="0")
        recorder.open_journal()
        assert recorder.pipeline.journal is not None and recorder.pipeline.journal.fsync_interval == 0
        recorder.pipeline.finish()


def test_an_open_session_holds_timing_not_the_exchange(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        flow = timed_flow(b"/big", 100.0)
        assert flow.response is not None
        flow.response.content = b"x" * 100_000
        recorder.response(flow)
        (held,) = [x for s in recorder.pipeline.sessionizer._open.values() for x in s.exchanges]
        assert isinstance(held, Spilled) and held.exchange is None  # only timing and a journal offset
        recorder.pipeline.finish()
    body = load_recordings(tmp_path)[0].requests[0].response.body  # type: ignore[union-attr]
    assert body is not None and body.size == 100_000


def test_replay_recover_says_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert journal_main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: no such directory"
    assert journal_main([str(tmp_path)]) == 0
    assert "nothing to recover" in capsys.readouterr().err
    journal = Journal(tmp_path)
    journal.append("20260101T000000-abcd1234", CLIENT, exchange("/a", 100.0))
    crash(journal)
    assert journal_main([str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "recovered 1 requests in 1 sessions" in out.err
    assert out.out.strip() == str(tmp_path / "20260101T000000-abcd1234.json")


def test_a_hostile_journal_session_id_is_one_line_and_no_start(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    killed = Recorder()
    with taddons.context(killed) as tctx:
        tctx.configure(killed, replay_dir=str(tmp_path))
        killed.response(timed_flow(b"/one", 100.0))
        assert killed.pipeline.journal is not None
        crash(killed.pipeline.journal)
    [path] = journals(tmp_path)
    path.write_text(path.read_text().replace('"s":"19700101T000140-', '"s":"../../escaped-'))

    restarted = Recorder()
    with taddons.context(restarted) as tctx:
        tctx.configure(restarted, replay_dir=str(tmp_path))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            restarted.running()  # the writer refuses the id: a RecordingError, not mitmproxy's traceback
        assert exit_info.value.code == 1
        tctx.master.event_loop.run_until_complete(restarted.done())  # nothing to say after a failed start
    err = capsys.readouterr().err.splitlines()
    refused = r"error: session id '\.\./\.\./escaped-\w+' cannot name a session file"
    assert len(err) == 1 and re.fullmatch(refused, err[0]), err
    assert list(tmp_path.glob("*.json")) == [] and not list(tmp_path.parent.glob("escaped-*"))
