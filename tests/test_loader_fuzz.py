"""Issue 12: every loader of a replay's inputs fuzzed with hypothesis: session files, rules files, data files.

Whatever a file holds, its loader either refuses it with a ``ReplayError`` of one line naming the file, or
what it loaded goes through everything a replay does with it before the first request: the master's
payload and back (what a worker decodes), the preparation of every session (what ``replay run --dry-run``
shows), ``replay inspect``, and the extractors the hot loop runs on a live response. Nothing else may
raise: an exception there is a traceback for the user, or a session that loaded and cannot replay.

In this process, no Locust runner and no sockets: each example is a few milliseconds. Each minimal failing
example hypothesis found is a plain test in tests/test_loader_examples.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from test_har_fuzz import set_at

from replayer.loading import prepare_workload
from replayer.plan import render_plan
from traffic_replay.correlation import Rule, load_rules
from traffic_replay.correlation.extraction import ResponseView, compile_extractor
from traffic_replay.correlation.model import Source
from traffic_replay.errors import ReplayError, report_error
from traffic_replay.format import Session, read_recordings
from traffic_replay.inspection import inspect_sessions, render_inspection
from traffic_replay.payload import Payload, Workload
from traffic_replay.settings import Settings
from traffic_replay.specs import parse_data_column
from traffic_replay.userdata import load_rows

pytestmark = pytest.mark.timeout(240)

# FUZZ_EXAMPLES=2000 for a longer hunt than CI's.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ODD_TEXT = ["", " ", "\x00", "a\x00b", "é☃😀", "\u2028", "\r\n", "a\r\nX-Injected: 1", "\t", "../../etc/passwd",
            "/", "*", "/a b", "/%zz", "/?q=\n", "//h/p", "http://h/p", "GET", "get", "X-CUSTOM_1", "HTTP/2", "h3",
            "2026-01-02T10:00:00", "2026-01-02T10:00:00Z", "2026-01-02T10:00:00+14:00", "0001-01-01T00:00:00",
            "9999-12-31T23:59:59", "text", "base64", "aGVsbG8=", "aGVsbG8", "!!!", "====", "a===",
            "application/json", "text/html; charset=x", "application/x-www-form-urlencoded", "image/png",
            "sid=abc; Path=/", "Bearer tok-123456-abcdef", "«redacted:0a1b2c3d»", "1", "-1", "1e400"]
NUMBERS = [0, -1, 1, 99, 100, 599, 600, 65535, 65536, 2**63, 1e-300, 1e300, 1.7976931348623157e308, -0.0, 0.5]

scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(NUMBERS), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ODD_TEXT), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["encoding", "data", "size", "status", "name"]) | st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


def base_session(n: int) -> dict[str, Any]:
    """A valid session whose steps carry a token, a cookie and a form field: correlation has work to do."""
    token = f"tok-{n:06d}-abcdef"
    return {
        "format_version": 1, "id": f"s{n}", "name": f"session {n}", "weight": 1.0,
        "client": {"address": "127.0.0.1", "user_agent": "fuzz/1"}, "started_at": "2026-01-02T10:00:00Z",
        "requests": [
            {"offset_ms": 0.0, "duration_ms": 5.0, "method": "POST", "scheme": "http", "host": "127.0.0.1",
             "port": 8000, "path": "/login", "http_version": "HTTP/1.1",
             "headers": [["Host", "127.0.0.1:8000"], ["Content-Type", "application/x-www-form-urlencoded"]],
             "body": {"encoding": "text", "data": "user=lin&password=«redacted:0a1b2c3d»", "size": 37,
                      "content_type": "application/x-www-form-urlencoded"},
             "response": {"status": 200, "reason": "OK", "duration_ms": 2.0,
                          "headers": [["Content-Type", "application/json"], ["Set-Cookie", "sid=abc123; Path=/"]],
                          "body": {"encoding": "text", "data": json.dumps({"token": token, "id": 1000 + n}),
                                   "size": 40, "content_type": "application/json"}}},
            {"offset_ms": 20.0, "duration_ms": 5.0, "method": "GET", "scheme": "http", "host": "127.0.0.1",
             "port": 8000, "path": f"/items/{1000 + n}?q=1", "headers": [["Authorization", f"Bearer {token}"],
                                                                          ["Cookie", "sid=abc123"]],
             "response": {"status": 200, "duration_ms": 2.0, "headers": [["Content-Type", "text/html"]],
                          "body": {"encoding": "base64", "data": "PGlucHV0IG5hbWU9ImNzcmYiIHZhbHVlPSJ4Ij4=",
                                   "size": 28, "content_type": "text/html"}}},
        ],
    }


PATHS: list[tuple[str | int, ...]] = [
    (), ("format_version",), ("id",), ("name",), ("weight",), ("client",), ("started_at",), ("requests",),
    ("requests", 0), ("requests", 0, "offset_ms"), ("requests", 1, "offset_ms"), ("requests", 0, "duration_ms"),
    ("requests", 0, "method"), ("requests", 0, "scheme"), ("requests", 0, "host"), ("requests", 1, "port"),
    ("requests", 1, "path"), ("requests", 0, "http_version"), ("requests", 0, "headers"),
    ("requests", 1, "headers", 0), ("requests", 1, "headers", 0, 1), ("requests", 1, "headers", 1, 0),
    ("requests", 0, "body"), ("requests", 0, "body", "encoding"), ("requests", 0, "body", "data"),
    ("requests", 0, "body", "size"), ("requests", 0, "body", "truncated"), ("requests", 0, "response"),
    ("requests", 0, "response", "status"), ("requests", 0, "response", "headers", 1, 1),
    ("requests", 0, "response", "body", "data"), ("requests", 0, "response", "body", "encoding"),
    ("requests", 1, "response", "body", "data"), ("requests", 1, "response", "body", "content_type"),
    ("requests", 0, "extra"),
]

# Schema-valid but odd: what a hostile or hand-edited file can hold and the recorder never writes.
ODD_BUT_VALID: list[tuple[tuple[str | int, ...], Any]] = [
    (("requests",), []), (("requests", 1, "offset_ms"), 1e300), (("requests", 0, "duration_ms"), 1.7e308),
    (("requests", 1, "offset_ms"), 0.0), (("weight",), 1e-300), (("weight",), 1.7e308),
    (("requests", 1, "headers", 0, 1), "Bearer tok\r\nX-Injected: 1"), (("requests", 1, "headers", 0, 0), "X\x00Y"),
    (("requests", 1, "headers", 1, 0), "Bad Name:"), (("requests", 1, "headers"), [["", ""]]),
    (("requests", 0, "body", "encoding"), "base64"), (("requests", 0, "body", "data"), "!!!not base64"),
    (("requests", 0, "body", "data"), "aGVsbG8"), (("requests", 0, "body", "size"), 0),
    (("requests", 0, "body", "size"), 2**62), (("requests", 0, "body", "truncated"), True),
    (("requests", 1, "response", "body", "encoding"), "text"), (("requests", 0, "response", "body", "data"), "{"),
    (("requests", 0, "response", "body", "encoding"), "base64"), (("requests", 1, "response", "body", "data"), "===="),
    (("requests", 1, "path"), "*"), (("requests", 1, "path"), "/a b\r\nHost: evil"), (("requests", 1, "path"), "/%zz"),
    (("requests", 0, "method"), "X-CUSTOM_1"), (("requests", 0, "http_version"), "h3"),
    (("requests", 1, "port"), 65535), (("requests", 1, "host"), "é.example"), (("requests", 1, "scheme"), "https"),
    (("started_at",), "2026-01-02T10:00:00"), (("started_at",), "0001-01-01T00:00:00+14:00"),
    (("started_at",), "9999-12-31T23:59:59-14:00"), (("requests", 0, "response"), None),
    (("requests", 0, "response", "status"), 599), (("requests", 0, "response", "headers"), [["Set-Cookie", ""]]),
    (("name",), "\u2028'\"\x00"), (("id",), "..."), (("client",), {}),
]


@st.composite
def session_documents(draw: st.DrawFn, n: int) -> Any:
    document: Any = base_session(n)
    for path, value in draw(st.lists(st.sampled_from(ODD_BUT_VALID), max_size=3)):
        document = set_at(document, path, value)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=2)):
        document = set_at(document, path, draw(values), delete=draw(st.booleans()) and path != ())
    return document


def _bytes_of(document: Any, layout: str) -> bytes:
    """As ``dump_session`` lays it out (one request per line), or as one JSON document."""
    if layout == "lines" and isinstance(document, dict) and isinstance(document.get("requests"), list):
        head = {k: v for k, v in document.items() if k != "requests"}
        text = json.dumps({**head, "requests": []}, separators=(",", ":"))[:-3]
        lines = ",\n".join(json.dumps(r, separators=(",", ":")) for r in document["requests"])
        return (text + ("[\n" + lines + "\n]}\n" if document["requests"] else "[]}\n")).encode()
    return json.dumps(document).encode()


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["cut", "byte", "insert"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "cut":
        return data[:at]
    if kind == "byte":
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]


LIVE = [ResponseView(lambda n: None, b"", lambda n: None),
        ResponseView(lambda n: "sid=x; Path=/" if n.lower() == "set-cookie" else "/items/7?x=1",
                     b'{"token": "tok-1", "id": 7, "a": [1, {"b": "c"}]}', lambda n: "x"),
        ResponseView(lambda n: "", "<input name='csrf' value='é'><meta name=\"m\" content=\"\xff\">".encode(),
                     lambda n: ""),
        ResponseView(lambda n: None, b"\xff\xfe\x00 not json", lambda n: None),
        ResponseView(lambda n: None, b'b id ["x"]', lambda n: None)]


SPLITS = re.compile(r"[\r\n\x00]").search


def _one_line(error: ReplayError, path: Path) -> None:
    out = io.StringIO()
    report_error(error, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), lines


def replays(sessions: list[Session], rules: list[Rule] | None = None, rows: list[dict[str, str]] | None = None,
            data_map: list[str] | None = None) -> None:
    """Everything a replay does with loaded inputs before it sends: the master's payload to a worker and
    back, the preparation of every session, the dry run's table, ``replay inspect``."""
    settings = Settings(recordings=Path("rec"), host="http://127.0.0.1:9",
                        data_map=[parse_data_column(m) for m in data_map or []])
    workload = Workload.of(settings, sessions, rules or [], rows or [], {"REPLAY_SECRET_0A1B2C3D": "hunter2"})
    received = Payload.of(workload).open()  # what a worker receives: all of it, or a PayloadError
    assert list(received.recorded()) == sessions and received.rows == workload.rows
    prepared = prepare_workload(received)
    render_plan(prepared, "http://127.0.0.1:9", Console(file=io.StringIO(), width=160))
    render_inspection(inspect_sessions(sessions, rules), Console(file=io.StringIO(), width=160), everything=True)
    for session in prepared:
        for step in session.steps:
            # What goes on the wire as the request line and header block: nothing that splits them.
            assert not SPLITS(step.url) and not any(SPLITS(f"{k}{v}") for k, v in step.headers), step.url
            for _, extract in step.extract:
                for view in LIVE:
                    extract(view)


def check_sessions(files: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n, data in enumerate(files):
            (directory / f"s{n}.json").write_bytes(data)
        try:
            recordings = read_recordings(directory, skip_bad=True)
        except ReplayError as e:
            _one_line(e, directory)
            return
        sessions, skipped = recordings.sessions, {e.path.name for e in recordings.skipped}
        for n, data in enumerate(files):  # whole or not at all: what loaded is the file's whole decoding
            try:
                whole = msgspec.json.decode(data, type=Session)
            except msgspec.MsgspecError:
                assert f"s{n}.json" in skipped
                continue
            assert whole in sessions or f"s{n}.json" in skipped, f"s{n}.json decodes whole but did not load as that"
        for error in recordings.skipped:
            _one_line(error, error.path)
        replays(sessions)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3).flatmap(session_documents), st.sampled_from(["lines", "one"])),
                min_size=1, max_size=3))
def test_odd_session_files_are_refused_in_one_line_or_replay(documents: list[tuple[Any, str]]) -> None:
    check_sessions([_bytes_of(d, layout) for d, layout in documents])


@FUZZ
@given(st.data())
def test_malformed_session_json_is_refused_in_one_line_or_replays(data: st.DataObject) -> None:
    good = _bytes_of(base_session(0), data.draw(st.sampled_from(["lines", "one"])))
    check_sessions([good, data.draw(damaged(good))])


RULE_KEYS = ["name", "json", "header", "cookie", "html_input", "html_meta", "regex", "from_path", "inject", "x"]
REGEXES = ["tok-[0-9]+-[a-f]+", "(tok)|(id)", "(a)|b", "(?u)x", "(?a)\\w+", "\\N{BULLET}", "é+", "(", "[", "\\",
           "(?P<x>.)", "(a)?", "^$", ".*", "\\d{2,1}", "(?i)TOKEN"]
SOURCE_VALUES = st.sampled_from([*REGEXES, "token", "id", "a.1.b", "a..b", "0", "²", "a.²", "٣", "sid", "csrf", "m",
                                 "", " "]) | st.text(max_size=8)
RULE_VALUES = st.one_of(SOURCE_VALUES,
                        st.lists(st.sampled_from(["header:X-Token", "form:password", "query:q", "json:a.b", "json:",
                                                  "body:x", "header:Authorization"]), max_size=3),
                        st.integers(-5, 5), st.booleans(), st.text(max_size=8))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string, as JSON escapes one


@st.composite
def rules_files(draw: st.DrawFn) -> bytes:
    blocks = []
    for n in range(draw(st.integers(0, 3))):
        fields: dict[str, Any] = {"name": f"rule{n}", draw(st.sampled_from(RULE_KEYS[1:7])): draw(SOURCE_VALUES)}
        for key in draw(st.lists(st.sampled_from(RULE_KEYS), max_size=3)):
            fields[key] = draw(RULE_VALUES)
        blocks.append("[[rule]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items()))
    text = "\n".join(blocks).encode()
    if draw(st.integers(0, 4)) == 0:
        text = draw(damaged(text or b"[[rule]]\nname = 'x'\n"))
    return text


@FUZZ
@given(rules_files())
def test_rules_files_are_refused_in_one_line_or_replay(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.toml"
        path.write_bytes(text)
        try:
            rules = load_rules(path)
        except ReplayError as e:
            _one_line(e, path)
            return
        for rule in rules:
            extract = compile_extractor(Source(0, rule.kind, rule.key(rule.kind) or ""))
            for view in LIVE:
                extract(view)
        session = msgspec.json.decode(_bytes_of(base_session(1), "one"), type=Session)
        replays([session], rules)


CELLS = st.one_of(st.sampled_from(["lin", "«redacted:0a1b2c3d»", "", " ", "a,b", 'a"b', "a\nb", "\x00", "é", "\ufeff",
                                   "\r"]), st.text(max_size=6))


@st.composite
def data_files(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    header = draw(st.lists(st.sampled_from(["username", "password", "id", "", "a b", "é"]), min_size=1, max_size=3))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=4), max_size=4))
    out = io.StringIO()
    import csv

    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode()
    kind = draw(st.sampled_from(["plain", "bom", "damaged"]))
    if kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "damaged":
        data = draw(damaged(data))
    mapped = draw(st.lists(st.sampled_from(["username=lin", "password=«redacted:0a1b2c3d»", "id=1000"]), max_size=2))
    return data, mapped


@FUZZ
@given(data_files())
def test_data_files_are_refused_in_one_line_or_replay(file: tuple[bytes, list[str]]) -> None:
    data, mapped = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.csv"
        path.write_bytes(data)
        columns = {m.partition("=")[0] for m in mapped}
        try:
            rows = load_rows(path, columns)
        except ReplayError as e:
            _one_line(e, path)
            return
        assert all(isinstance(k, str) and isinstance(v, str) for row in rows for k, v in row.items()), rows
        assert all(columns <= set(row) for row in rows), rows
        session = msgspec.json.decode(_bytes_of(base_session(1), "one"), type=Session)
        replays([session], rows=rows, data_map=mapped)

