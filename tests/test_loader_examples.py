"""Issue 12: the minimal failing examples that tests/test_loader_fuzz.py (and the HAR and flow fuzz, once
loading refused more) found, each a plain test, each fixed at its root: the loader refuses what a replay
could not use, in one line naming the file and the field, or what it loads replays."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_har_fuzz import set_at
from test_loader_fuzz import _bytes_of, base_session, replays

from replayer.loading import prepare_workload
from traffic_replay.correlation import load_rules
from traffic_replay.correlation.extraction import ResponseView, compile_extractor
from traffic_replay.correlation.model import Source
from traffic_replay.errors import ReplayError
from traffic_replay.format import read_recordings
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings
from traffic_replay.userdata import load_rows

pytestmark = pytest.mark.timeout(60)


def _directory(tmp_path: Path, *documents: Any) -> Path:
    for n, document in enumerate(documents):
        (tmp_path / f"s{n}.json").write_text(json.dumps(document))
    return tmp_path


def test_a_body_that_says_base64_and_is_not_is_refused_at_load_naming_the_field(tmp_path: Path) -> None:
    lying, unpadded = base_session(0), base_session(1)
    lying["requests"][0]["body"] = {"encoding": "base64", "data": "«redacted»ab", "size": 12}
    unpadded["requests"][1]["response"]["body"]["data"] = "aGVsbG8"
    directory = _directory(tmp_path, lying, unpadded)
    with pytest.raises(ReplayError) as info:  # was: loaded, then a ValueError in every replay of the session
        read_recordings(directory)
    assert info.value.lines() == [
        f"{directory / 's0.json'}: field 'requests.0.body': data is not base64 (a character outside its alphabet)",
        f"{directory / 's1.json'}: field 'requests.1.response.body': data is not base64 (Incorrect padding)"]


def test_sessions_with_and_without_a_time_zone_replay_together(tmp_path: Path) -> None:
    naive, aware = base_session(0), base_session(1)
    naive["started_at"] = "2026-01-02T10:00:00"
    aware["started_at"] = "2026-01-02T10:00:05+00:00"
    sessions = read_recordings(_directory(tmp_path, naive, aware)).sessions
    replays(sessions)  # was: TypeError, can't compare offset-naive and offset-aware datetimes
    assert prepare_workload(Workload.of(Settings(host="http://127.0.0.1:9"), sessions))[1].start == 5.0


@pytest.mark.parametrize(("text", "message"), [
    (b"\x80[rule]]\nname = 'x'\n", "not valid TOML: not UTF-8 at byte 0"),  # was: UnicodeDecodeError
    (b'[[rule]]\nname = "r"\nregex = "(?u)x"\n',
     "rule.0.regex: '(?u)x' is not a valid regular expression: bad inline flags: cannot use 'u' flag with a bytes "
     "pattern at position 3"),  # was: re.error as each session was prepared
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML: nested too deep"),
])
def test_a_bad_rules_file_is_one_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(text)
    with pytest.raises(ReplayError) as info:
        load_rules(path)
    assert info.value.lines() == [f"{path}: {message}"]


def test_rules_whose_source_can_match_without_a_value_extract_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "alt"\nregex = "(a)|b"\n\n[[rule]]\nname = "sup"\njson = "a.²"\n')
    rules = load_rules(path)
    alt, sup = (compile_extractor(Source(0, r.kind, r.key(r.kind) or "")) for r in rules)
    assert alt(ResponseView(lambda n: None, b"b", lambda n: None)) is None  # was: AttributeError on None.decode
    assert sup(ResponseView(lambda n: None, '{"a": {"²": "x"}}'.encode(), lambda n: None)) == "x"  # was: int("²")


@pytest.mark.parametrize(("text", "message"), [
    (b"username,username\r\nlin,lou\r\n", "column username is twice in the header line"),
    (b"username,password\r\nlin\r\n", "line 2: 1 fields, the header line has 2"),  # was: a row with None in it
    (b"username\r\nlin,extra\r\n", "line 2: 2 fields, the header line has 1"),  # was: a None column
    (b"username\r\n\xff\r\n", "not a readable CSV file: not UTF-8 at byte 10"),
])
def test_a_bad_data_file_is_one_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(text)
    with pytest.raises(ReplayError) as info:
        load_rows(path, {"username"})
    assert info.value.lines() == [f"{path}: {message}"]


def test_a_data_file_from_a_spreadsheet_keeps_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"\xef\xbb\xbfusername,password\r\nlin,pw\r\n\r\n")
    assert load_rows(path, {"username"}) == [{"username": "lin", "password": "pw"}]


@pytest.mark.parametrize("name", ["rules.toml", "users.csv"])
def test_a_fifo_as_rules_or_data_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    os.mkfifo(path)
    with pytest.raises(ReplayError) as info:
        load_rules(path) if name == "rules.toml" else load_rows(path, set())
    assert info.value.lines() == [f"{path}: a named pipe (FIFO), not a file"]


@pytest.mark.parametrize(("where", "value", "field"), [
    (("requests", 1, "headers", 0, 1), "Bearer tok\r\nX-Injected: 1", "requests.1.headers.0': the header's value has"
                                                                    " a line break or control character"),
    (("requests", 1, "headers", 1, 0), "Bad Name:", "requests.1.headers.1': the header's name is not an HTTP token"),
    (("requests", 1, "path"), "/a HTTP/1.1\r\nHost: evil\r\n\r\nGET /", "requests.1.path': a space, line break or"
                                                                        " control character"),
])
def test_what_would_split_the_request_it_is_sent_in_is_refused_at_load(tmp_path: Path, where: tuple[str | int, ...],
                                                                       value: str, field: str) -> None:
    for layout in ("lines", "one"):
        path = tmp_path / f"{layout}.json"
        path.write_bytes(_bytes_of(set_at(base_session(0), where, value), layout))
        with pytest.raises(ReplayError) as info:  # was: sent as it was, a header or a request of its own
            read_recordings(tmp_path)
        assert info.value.lines() == [f"{path}: field '{field}"]
        path.unlink()


def test_a_bad_header_is_refused_in_every_file_that_sends_it(tmp_path: Path) -> None:
    """What repeats is checked once: a refused pair must not count as seen for the next file."""
    good, first, second = base_session(0), base_session(1), base_session(2)
    for document in (first, second):
        document["requests"][0]["headers"].append(["X-Bad", "a\nb"])
    directory = _directory(tmp_path, good, first, second)
    recordings = read_recordings(directory, skip_bad=True)
    assert [s.id for s in recordings.sessions] == ["s0"]
    assert [str(e) for e in recordings.skipped] == [
        f"{directory / name}: field 'requests.0.headers.2': the header's value has a line break or control character"
        for name in ("s1.json", "s2.json")]


def test_a_header_first_seen_in_an_answer_is_still_checked_when_a_request_sends_it(tmp_path: Path) -> None:
    """Only a pair not seen before is checked, and what a server answered counts as seen by no request."""
    document = base_session(0)
    document["requests"][0]["response"]["headers"].append(["X-Echo", "a\x01b"])
    document["requests"][1]["headers"].append(["X-Echo", "a\x01b"])
    directory = _directory(tmp_path, document)
    with pytest.raises(ReplayError) as info:
        read_recordings(directory)
    assert info.value.lines() == [f"{directory / 's0.json'}: field 'requests.1.headers.2': the header's value has a"
                                  " line break or control character"]


def _import(tmp_path: Path, entry: dict[str, Any]) -> tuple[int, str, Path]:
    import contextlib

    from recorder.importer import main

    har, out = tmp_path / "in.har", tmp_path / "rec"
    har.write_text(json.dumps({"log": {"version": "1.2", "pages": [], "entries": [entry]}}))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(har), "-o", str(out)])
    return code, err.getvalue(), out


def test_a_har_header_that_would_split_the_request_is_an_invalid_entry(tmp_path: Path) -> None:
    from test_har_fuzz import base_entry

    entry = base_entry(0)
    entry["request"]["headers"][0] = {"name": "X-A", "value": "a\r\nX-Injected: 1"}
    code, err, out = _import(tmp_path, entry)  # was: imported, then a file every load refuses
    assert code == 2 and "entry 1: request.headers[0]: the header's value has a line break or control character" \
        in err, err
    assert not out.exists()


def test_a_har_url_with_a_space_is_imported_as_a_browser_sends_it(tmp_path: Path) -> None:
    from test_har_fuzz import base_entry

    entry = base_entry(0)
    entry["request"]["url"] = "http://shop.example/items/a b?q=x y"
    code, err, out = _import(tmp_path, entry)
    assert code == 0, err
    assert [r.path for s in read_recordings(out).sessions for r in s.requests] == ["/items/a%20b?q=x%20y"]


def test_a_recorded_flow_that_could_not_be_replayed_is_an_invalid_flow_and_a_raw_space_is_escaped(
        tmp_path: Path) -> None:
    """The recorder's side of what a session file refuses (found in a damaged flow file: a header name with a
    NUL byte): the flow is invalid and named, the other flows are kept; a path with a raw space is escaped."""
    import contextlib

    from mitmproxy import io as flowio
    from mitmproxy.test import tflow

    from recorder.importer import main

    path, out = tmp_path / "flows.mitm", tmp_path / "rec"
    with path.open("wb") as fh:
        writer = flowio.FlowWriter(fh)
        for n, change in enumerate(["header", "space", None]):
            flow = tflow.tflow(resp=True)
            flow.request.path = "/items/a b" if change == "space" else f"/items/{n}"
            if change == "header":
                flow.request.headers.fields = ((b"X-\x00Bad", b"1"),)
            flow.request.timestamp_start = flow.request.timestamp_end = 1767348000.0 + n
            flow.response.timestamp_start = flow.response.timestamp_end = 1767348000.5 + n  # type: ignore[union-attr]
            writer.add(flow)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(path), "-o", str(out)])
    assert code == 0, err.getvalue()  # was: all three written, and the directory refused at every load
    assert "flow 1: field 'headers.0': the header's name is not an HTTP token" in err.getvalue(), err.getvalue()
    assert sorted(r.path for s in read_recordings(out).sessions for r in s.requests) == ["/items/2", "/items/a%20b"]
