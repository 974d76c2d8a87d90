"""Issue 12, import: bad HARs and flow files, each refused or reported in one line that names the file
(and the entry), and nothing left in ``-o`` by an import that keeps nothing.

Most run the importer in this process (``recorder.importer.main``: what ``replay import`` execs);
a few through the real ``replay import`` command, as a user runs it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from mitmproxy import io as flowio
from mitmproxy.test import tflow

from recorder.har import HarFile
from recorder.importer import import_har, main
from recorder.writer import file_name, write_lines
from traffic_replay.errors import RecordingError
from traffic_replay.format import ClientInfo, Session, load_recordings
from traffic_replay.settings import Settings

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

REPLAY = [sys.executable, "-m", "traffic_replay.cli"]


def entry(url: str = "http://shop.example/a", status: Any = 200, **changes: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "startedDateTime": "2026-01-02T10:00:00.000Z", "time": 5,
        "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1", "headers": []},
        "response": {"status": status, "statusText": "OK", "headers": [],
                     "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}}}
    made.update(changes)
    return made


def har_file(tmp_path: Path, entries: list[Any], name: str = "x.har", **log: Any) -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", **log, "entries": entries}}))
    return path


def run(*args: str | Path) -> tuple[int, list[str], list[str]]:
    """``replay import ARGS`` in this process: exit code, stderr lines, stdout lines."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, err.getvalue().splitlines(), out.getvalue().splitlines()


def everything_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def test_the_issue_s_har_is_one_error_naming_each_entry_and_leaves_no_directory(tmp_path: Path) -> None:
    no_url, no_response = entry(), entry()
    del no_url["request"]["url"], no_response["response"]
    har = har_file(tmp_path, [no_url, no_response])
    out = tmp_path / "rec"
    done = subprocess.run([*REPLAY, "import", str(har), "-o", str(out)], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [
        f"error: {har}: no request could be imported (2 entries: entry 1: no request.url; entry 2: no response)"],
        "")
    assert not out.exists()  # not the directory, nor a key or a journal in it


def test_an_existing_output_directory_is_left_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    out.mkdir()
    har = har_file(tmp_path, [entry("data:text/plain,hi"), entry(status=0)])
    code, err, _ = run(har, "-o", out)
    assert code == 2 and err == [f"error: {har}: no request could be imported (2 entries: 1 not an http(s) URL; "
                                 "1 no response (status 0: blocked, cancelled or failed))"]
    assert everything_in(out) == []


def test_every_entry_filtered_out_is_nothing_imported_too(tmp_path: Path) -> None:
    har = har_file(tmp_path, [entry(), entry("http://shop.example/b")])
    os.environ["REPLAY_ALLOW_HOST"] = '["other.example"]'
    try:
        code, err, _ = run(har, "-o", tmp_path / "rec")
    finally:
        del os.environ["REPLAY_ALLOW_HOST"]
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {har}: no request could be imported (2 entries: 2 ")
    assert not (tmp_path / "rec").exists()


def bad_entries() -> list[tuple[Any, str]]:
    """Entries each wrong in one way, and what the import says of it."""
    def with_request(**changes: Any) -> dict[str, Any]:
        made = entry()
        made["request"].update(changes)
        return made

    def with_response(**changes: Any) -> dict[str, Any]:
        made = entry()
        made["response"].update(changes)
        return made

    return [
        (with_response(status="abc"), 'response.status is "abc", not a number'),
        (with_request(postData={"mimeType": "text/plain", "text": 3}), "request.postData.text is 3, not text"),
        (with_request(url="http://127.0.0.1:99999/c"),
         'request.url "http://127.0.0.1:99999/c" is not a valid URL (port out of range 0-65535)'),
        (entry(startedDateTime="yesterday"), 'startedDateTime "yesterday" is not a date and time (ISO 8601)'),
        (with_request(headers=[{"name": "X"}]), "no request.headers[0].value"),
        (with_response(content={"text": "!!!", "encoding": "base64"}),
         "response.content.text is not valid base64 (its encoding says base64)"),
        (with_response(status=1000), "response.status is 1000, not an HTTP status (100 to 599)"),
        (with_request(url=["http://x/"]), "request.url is a list, not text"),
        (entry(timings={"wait": "long"}), 'timings.wait is "long", not a number'),
        (entry(request=None), "request is null, not an object"),
        ("GET /", 'the entry is "GET /", not an object'),
        (with_request(url="http://[::1/"), 'request.url "http://[::1/" is not a valid URL (invalid ipv6 url)'),
    ]


def test_each_invalid_entry_is_named_the_first_five_in_full(tmp_path: Path) -> None:
    cases = bad_entries()
    entries = [entry("http://shop.example/kept")] + [e for e, _ in cases]
    har = har_file(tmp_path, entries)
    code, err, written = run(har, "-o", tmp_path / "rec")
    assert code == 0, err
    assert err[0] == (f"replay: imported 1 of {len(entries)} requests from {har} into 1 sessions in "
                      f"{tmp_path / 'rec'}/")
    assert err[1:3] == [f"skipped {len(cases)}:", f"  {len(cases):>6}  not a valid HAR entry  (e.g. entry 2)"]
    # Numbered from 1 as in the file (the first, kept, is entry 1).
    assert err[3:] == [f"  entry {n}: {what}" for n, (_, what) in enumerate(cases[:5], 2)] + [
        f"  and {len(cases) - 5} more entries skipped (invalid)"]
    assert [r.path for s in load_recordings(tmp_path / "rec") for r in s.requests] == ["/kept"]
    assert len(written) == 1 and Path(written[0]).parent == tmp_path / "rec"


@pytest.mark.parametrize(("index", "case"), list(enumerate(bad_entries())))
def test_what_is_wrong_with_each_entry_is_said_precisely(tmp_path: Path, index: int, case: tuple[Any, str]) -> None:
    bad, what = case
    har = har_file(tmp_path, [bad])
    code, err, _ = run(har, "-o", tmp_path / "rec")
    assert (code, err) == (2, [f"error: {har}: no request could be imported (1 entries: entry 1: {what})"])


def test_the_reasons_come_back_from_the_parsing_child_of_a_big_har(tmp_path: Path) -> None:
    cases = bad_entries()
    padding = {"size": 1, "mimeType": "text/plain", "text": "x" * (1 << 20)}
    entries = [entry("http://shop.example/kept", response={**entry()["response"], "content": padding})] * 9
    har = har_file(tmp_path, entries + [e for e, _ in cases])
    assert har.stat().st_size > HarFile(har).fork_from  # parsed in the child by default
    forked: list[int] = []
    fork = os.fork

    def counting_fork() -> int:
        pid = fork()
        if pid:
            forked.append(pid)
        return pid

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("recorder.harparse.os.fork", counting_fork)
        code, err, _ = run(har, "-o", tmp_path / "rec")
    assert code == 0 and len(forked) == 1, err
    assert err[3:8] == [f"  entry {n}: {what}" for n, (_, what) in enumerate(cases[:5], 10)]
    # The same, parsed here: what the child says is what this process says.
    here = import_har(har, tmp_path / "here", Settings.of_process(), "file", HarFile(har, fork_from=1 << 62))
    there = import_har(har, tmp_path / "there", Settings.of_process(), "file", HarFile(har, fork_from=0))
    assert here.invalid == there.invalid and here.invalid_count == there.invalid_count == len(cases)
    assert here.skipped == there.skipped and here.imported == there.imported == 9


@pytest.mark.parametrize(("content", "message"), [
    (b"[]", "not a HAR file: no log.entries list"),
    (b'{"log": 3}', "not a HAR file: no log.entries list"),
    (b'{"log": {"entries": 3}}', "not a HAR file: no log.entries list"),
    (b'{"log": {"entries": [', "not a HAR file: not valid JSON"),
    (b'{"log": {"entries": ["caf\xe9"]}}', "not a HAR file: not valid JSON"),
    (b'{"log": {"entries": []}}', "no request could be imported (no entries in it)"),
    (b"", "not a mitmproxy flow file"),
    (b"\x00" * 1000, "not a mitmproxy flow file"),
    (b"12:not a flow,", "not a mitmproxy flow file"),
])
def test_a_file_that_is_no_har_or_flow_file_is_one_line_and_no_directory(tmp_path: Path, content: bytes,
                                                                         message: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    code, err, _ = run(path, "-o", tmp_path / "rec")
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {path}: ") and message in err[0], err
    assert not (tmp_path / "rec").exists()


def test_inputs_that_are_not_regular_files_are_refused_before_they_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opened for reading the usual way, this would wait for a writer forever
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    dangling = tmp_path / "dangling.har"
    dangling.symlink_to(tmp_path / "gone.har")
    for path, what in [(tmp_path, "a directory, not a file"),
                       (fifo, "a named pipe (FIFO), not a file (save what it gives to a file, and import that)"),
                       (Path("/dev/zero"), "a device, not a file (save what it gives to a file, and import that)"),
                       (loop_a, "a symbolic link loop (too many levels of symbolic links)"),
                       (dangling, "a symbolic link to a missing file"), (tmp_path / "missing.har", "no such file")]:
        code, err, _ = run(path, "-o", tmp_path / "rec")
        assert (code, err) == (2, [f"error: {path}: {what}"])
    assert not (tmp_path / "rec").exists()


def test_an_unknown_har_version_is_a_warning_and_the_entries_are_read(tmp_path: Path) -> None:
    har = har_file(tmp_path, [entry()], version="2.0")
    code, err, _ = run(har, "-o", tmp_path / "rec")
    assert code == 0
    assert err[0] == f'warning: {har}: HAR version "2.0" is not 1.1 or 1.2: its entries are read as HAR 1.2'
    assert err[1].startswith("replay: imported 1 of 1 requests")
    bad = har_file(tmp_path, [{"request": 1}], name="bad.har", version=3)
    code, err, _ = run(bad, "-o", tmp_path / "rec2")
    assert (code, err) == (2, [f"error: {bad}: no request could be imported (1 entries: entry 1: request is 1, not "
                               "an object; HAR version 3 is not 1.1 or 1.2: its entries are read as HAR 1.2)"])


def test_an_import_leaves_no_journal_behind(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    code, err, _ = run(har_file(tmp_path, [entry()]), "-o", out)
    assert code == 0, err
    assert [p for p in everything_in(out) if not p.endswith(".json")] == [".recording-id"]


def test_a_har_cut_after_kept_entries_takes_back_all_it_made(tmp_path: Path) -> None:
    path = har_file(tmp_path, [entry()] * 5)
    path.write_bytes(path.read_bytes()[:-60])  # the entries before the cut are fed, then the JSON ends
    out = tmp_path / "rec"
    code, err, _ = run(path, "-o", out)
    assert code == 2 and len(err) == 1 and "not a HAR file: not valid JSON" in err[0]
    assert not out.exists()


def test_enormous_bodies_are_capped_with_memory_bounded(tmp_path: Path) -> None:
    size = (50 << 20) // 3 * 3
    body = os.urandom(3) * (size // 3)  # 50 MB, base64 in the HAR: ~67 MB of one JSON string
    big = entry(response={**entry()["response"], "content": {
        "size": len(body), "mimeType": "application/octet-stream", "encoding": "base64",
        "text": base64.b64encode(body).decode()}})
    har = har_file(tmp_path, [entry("http://shop.example/first"), big])
    del body, big
    out = tmp_path / "rec"
    # A fresh process, so that the peak memory measured is the import's alone.
    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(done.stderr); print(done.returncode, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, *REPLAY, "import", str(har), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    code, peak_kb = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert "imported 2 of 2 requests" in done.stderr
    (session,) = load_recordings(out)
    response = session.requests[1].response
    assert response is not None and response.body is not None
    assert (response.body.size, response.body.truncated) == (size, True)
    assert len(response.body.to_bytes()) == 256 * 1024  # the recorder's body cap
    # Bounded by the one entry (its JSON text, its bytes), not by the file: well under 6 copies of it.
    print(f"peak {peak_kb} kB for a HAR of {har.stat().st_size} bytes")
    assert peak_kb * 1024 < 6 * har.stat().st_size, peak_kb


def test_hostile_page_ids_and_titles_never_name_a_path(tmp_path: Path) -> None:
    hostile = ["../../etc/passwd", "/abs/path", "a\x00b", "..", ".", "", "C:\\windows", "x/" * 50]
    pages = [{"id": h, "title": h, "startedDateTime": "2026-01-02T10:00:00.000Z"} for h in hostile]
    entries = [entry(f"http://shop.example/{i}", pageref=h) for i, h in enumerate(hostile)]
    (tmp_path / "in").mkdir()
    har = har_file(tmp_path / "in", entries, pages=pages)
    out = tmp_path / "deep" / "rec"
    code, err, written = run(har, "-o", out, "--per", "page")
    assert code == 0, err
    assert len(written) == len(hostile) and all(Path(w).parent == out for w in written)
    sessions = load_recordings(out)
    assert sorted(s.name for s in sessions) == sorted(h or "x" for h in hostile)  # a title, never a path
    assert everything_in(tmp_path) == sorted(
        ["deep", "deep/rec", "deep/rec/.recording-id", "in", "in/x.har"] + [f"deep/rec/{Path(w).name}"
                                                                              for w in written])


@pytest.mark.parametrize("session_id", ["..", ".", "../x", "/etc/passwd", "a/b", ".hidden", "", "a\x00b", "é"])
def test_the_writer_refuses_an_id_that_is_not_a_plain_file_name(tmp_path: Path, session_id: str) -> None:
    with pytest.raises(RecordingError, match="cannot name a session file"):
        file_name(session_id)
    session = Session(id=session_id, name="x", client=ClientInfo(), started_at=datetime.now(tz=UTC), requests=[])
    (tmp_path / "rec").mkdir()
    with pytest.raises(RecordingError):
        write_lines(tmp_path / "rec", session, [])
    assert everything_in(tmp_path) == ["rec"]


def flow_file(path: Path, count: int) -> Path:
    with path.open("wb") as fh:
        writer = flowio.FlowWriter(fh)
        for n in range(count):
            flow = tflow.tflow(resp=True)
            flow.request.path = f"/items/{n}"
            flow.request.timestamp_start = flow.request.timestamp_end = 1767348000.0 + n
            flow.response.timestamp_start = flow.response.timestamp_end = 1767348000.5 + n  # type: ignore[union-attr]
            writer.add(flow)
    return path


def test_a_flow_file_that_keeps_nothing_is_one_line_and_no_directory(tmp_path: Path) -> None:
    flows = flow_file(tmp_path / "flows.mitm", 3)
    os.environ["REPLAY_ALLOW_HOST"] = '["other.example"]'
    try:
        code, err, _ = run(flows, "-o", tmp_path / "rec")
    finally:
        del os.environ["REPLAY_ALLOW_HOST"]
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {flows}: no request could be imported (3 flows: 3 ")
    assert not (tmp_path / "rec").exists()


def test_a_flow_file_cut_short_keeps_the_flows_before_the_cut(tmp_path: Path) -> None:
    flows = flow_file(tmp_path / "flows.mitm", 4)
    flows.write_bytes(flows.read_bytes()[:-100])
    code, err, _ = run(flows, "-o", tmp_path / "rec")
    assert code == 2 and err[-1].startswith(f"error: {flows}: truncated or damaged after flow 3")
    assert [r.path for s in load_recordings(tmp_path / "rec") for r in s.requests] == [f"/items/{n}" for n in range(3)]
    cut = tmp_path / "cut.mitm"
    cut.write_bytes(flows.read_bytes()[:50])  # not even the first flow
    code, err, _ = run(cut, "-o", tmp_path / "rec2")
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {cut}: not a mitmproxy flow file")
    assert not (tmp_path / "rec2").exists()


def test_a_session_that_cannot_be_written_is_one_line_and_a_failed_import(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder import pipeline

    pages = [{"id": p, "startedDateTime": "2026-01-02T10:00:00.000Z", "title": p} for p in ("p1", "p2", "p3")]
    har = har_file(tmp_path, [entry(f"http://shop.example/{p}", pageref=p) for p in ("p1", "p2", "p3")], pages=pages)
    real, calls = pipeline.write_lines, []

    def full_disk(*args: Any, **kwargs: Any) -> Path:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(pipeline, "write_lines", full_disk)
    code, err, out = run(har, "-o", tmp_path / "rec", "--per", "page")
    assert code == 2 and out == [], err
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'rec'}: cannot write session "), err
    assert err[0].endswith(": No space left on device; the import stopped after 1 sessions")
    assert len(load_recordings(tmp_path / "rec")) == 1  # what was written before stays
    assert not (tmp_path / "rec" / ".journal").exists() or not any((tmp_path / "rec" / ".journal").iterdir())


def test_a_flow_with_a_field_mitmproxy_does_not_know_ends_the_file_there_in_one_line(tmp_path: Path) -> None:
    # What hypothesis found: a changed byte that gives a flow's state a key of its own; mitmproxy's
    # reader asserts there is none (an AssertionError, not one of its own exceptions).
    from mitmproxy.io import tnetstring

    good = flow_file(tmp_path / "good.mitm", 3)
    with good.open("rb") as fh:
        flows = list(flowio.FlowReader(fh).stream())
    bad = tmp_path / "bad.mitm"
    with bad.open("wb") as fh:
        for n, flow in enumerate(flows):
            state = flow.get_state()
            if n == 2:
                state["flip"] = b"\x00"
            tnetstring.dump(state, fh)
    code, err, _ = run(bad, "-o", tmp_path / "rec")
    assert code == 2 and "Traceback" not in "\n".join(err), err
    assert err[-1] == f"error: {bad}: truncated or damaged after flow 2: what it holds is not a flow", err
    assert [r.path for s in load_recordings(tmp_path / "rec") for r in s.requests] == ["/items/0", "/items/1"]


def test_a_flow_a_session_could_not_hold_is_named_and_the_others_are_imported(tmp_path: Path) -> None:
    # What hypothesis found in a flow file with one byte changed: a scheme of "\x00ttp", text
    # that is not UTF-8. Each is an invalid flow, named; the file goes on. A path that is not
    # UTF-8 is what a client may really send: it is kept, percent-escaped.
    good = flow_file(tmp_path / "good.mitm", 5)
    with good.open("rb") as fh:
        flows = list(flowio.FlowReader(fh).stream())
    flows[1].request.scheme = "\x00ttp"
    flows[2].request.data.http_version = b"HTTP/1.\xff"
    flows[3].request.data.path = b"/items/\xff"
    bad = tmp_path / "bad.mitm"
    with bad.open("wb") as fh:
        for flow in flows:
            flowio.FlowWriter(fh).add(flow)
    code, err, out = run(bad, "-o", tmp_path / "rec")
    assert code == 0 and len(out) == 1, err
    assert err[0].startswith(f"replay: imported 3 of 5 requests from {bad}"), err
    assert "  flow 2: field 'scheme': Invalid enum value '\\x00ttp'" in err, err
    assert "  flow 3: field 'http_version': not valid Unicode (bytes that are not UTF-8)" in err, err
    paths = [r.path for s in load_recordings(tmp_path / "rec") for r in s.requests]
    assert paths == ["/items/0", "/items/%FF", "/items/4"]
