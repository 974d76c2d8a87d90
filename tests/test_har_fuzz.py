"""Issue 12: the HAR loader (and, briefly, the flow file reader) fuzzed with hypothesis. Whatever the HAR
holds, ``replay import`` either writes session files that load, or refuses in one ``error:`` line and
leaves nothing behind; no traceback.

The importer runs in this process (``recorder.importer.main``, what ``replay import`` execs): plain
Python, no event loop running, so each example is a few milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_import_bad_input import flow_file

from recorder.harentry import INVALID
from recorder.importer import main
from traffic_replay.format import load_recordings

pytestmark = pytest.mark.timeout(180)

# FUZZ_EXAMPLES=2000 for a longer hunt than CI's.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

ODD_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "é☃😀", "\u2028", "\n", "../../etc/passwd", "/abs/path", "..",
            "http://[::1", "http://h:0/", "http://h:65536/", "https://é.example/ä?x=\n", "ftp://x/", "data:,x",
            "http://h/%zz", "http://user:pw@h:8080/p?q#f", "//h/p", "http:///p", "GET", "G ET", "get",
            "2026-13-40T00:00:00Z", "0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "2026-01-02T10:00:00Z",
            "2026-01-02", "base64", "aGVsbG8=", "aGVsbG8", "!!!", "application/json", "text/html; charset=x",
            "application/x-www-form-urlencoded", "HTTP/2", "h3", "HTTP/1.1", "-1"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ODD_TEXT), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["name", "value", "text", "x", "status", "url"]) | st.text(
                          max_size=5), inner, max_size=3), max_leaves=8)


def base_entry(n: int) -> dict[str, Any]:
    return {
        "pageref": f"page_{n % 2}", "startedDateTime": f"2026-01-02T10:00:0{n % 10}.000Z", "time": 5,
        "request": {"method": "POST", "url": f"http://shop.example/items/{n}?q=1", "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "User-Agent", "value": "fuzz/1"},
                                {"name": "Content-Type", "value": "application/json"}],
                    "postData": {"mimeType": "application/json", "text": '{"password": "x", "a": [1]}'}},
        "response": {"status": 200, "statusText": "OK",
                     "headers": [{"name": "Set-Cookie", "value": "sid=abc; Path=/"}],
                     "content": {"size": 5, "mimeType": "text/plain", "encoding": "base64", "text": "aGVsbG8="}},
        "timings": {"blocked": 1, "dns": -1, "connect": -1, "send": 1, "wait": 2, "receive": 1},
    }


PATHS: list[tuple[str | int, ...]] = [
    (), ("request",), ("request", "url"), ("request", "method"), ("request", "httpVersion"), ("request", "headers"),
    ("request", "headers", 0), ("request", "headers", 0, "name"), ("request", "headers", 1, "value"),
    ("request", "postData"), ("request", "postData", "text"), ("request", "postData", "encoding"),
    ("request", "postData", "mimeType"), ("request", "postData", "params"), ("response",), ("response", "status"),
    ("response", "statusText"), ("response", "headers"), ("response", "content"), ("response", "content", "text"),
    ("response", "content", "encoding"), ("response", "content", "mimeType"), ("startedDateTime",), ("time",),
    ("timings",), ("timings", "wait"), ("timings", "send"), ("pageref",), ("extra",),
]


@st.composite
def entries(draw: st.DrawFn, n: int) -> Any:
    entry: Any = base_entry(n)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4)):
        delete = draw(st.booleans()) and path != ()
        entry = set_at(entry, path, draw(values), delete)
    return entry


def set_at(document: Any, path: tuple[str | int, ...], value: Any, delete: bool = False) -> Any:
    """``document`` with ``value`` at ``path`` (or what is there deleted); the whole of it when ``path`` is ()."""
    if path == ():
        return value
    holder = document
    try:
        for key in path[:-1]:
            holder = holder[key]
        if delete:
            del holder[path[-1]]
        else:
            holder[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        pass  # an earlier mutation took the way there
    return document


@st.composite
def documents(draw: st.DrawFn) -> Any:
    count = draw(st.integers(min_value=0, max_value=6))
    listed = [draw(entries(n)) for n in range(count)]
    pages = draw(st.lists(st.fixed_dictionaries({"id": st.sampled_from(["page_0", "page_1"]) | values,
                                                 "title": values}), max_size=3))
    log: Any = {"version": draw(st.sampled_from(["1.2", "1.1", "2.0"]) | values), "pages": pages,
                "entries": listed}
    if draw(st.integers(0, 9)) == 0:
        log = draw(values)  # wrong at the top
    return {"log": log}


def run_import(data: bytes, per: str) -> None:
    """Import ``data`` as a HAR; check that it was written and loads, or refused in one line leaving nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        har, out = root / "fuzz.har", root / "out" / "rec"
        har.write_bytes(data)
        err, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            code = main([str(har), "-o", str(out), "--per", per])  # anything but a ReplayError propagates
        lines = err.getvalue().splitlines()
        assert all(f"{INVALID} (" not in line for line in lines), lines  # a wrong field the checks missed
        if code == 0:
            written = [Path(p) for p in stdout.getvalue().splitlines()]
            assert written and all(p.parent == out and p.is_file() for p in written), written
            assert len(load_recordings(out)) == len(written)  # every file written validates
            assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
                [".recording-id", "fuzz.har", *(p.name for p in written)])
        else:
            assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {har}: "), lines
            assert not (root / "out").exists()  # nothing made: not even the directory


@FUZZ
@given(documents(), st.sampled_from(["file", "page"]))
def test_odd_har_documents_are_imported_or_refused_in_one_line(document: Any, per: str) -> None:
    run_import(json.dumps(document).encode(), per)  # json, not orjson: lone surrogates are escaped, not refused


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(json.dumps(draw(documents())).encode())
    kind = draw(st.sampled_from(["cut", "byte", "insert", "random"]))
    if kind == "random":
        return b"{" + draw(st.binary(max_size=200))
    at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
    if kind == "cut":
        return bytes(data[:at])
    if kind == "byte" and data:
        data[at] = draw(st.integers(0, 255))
        return bytes(data)
    return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=8)) + bytes(data[at:])


@FUZZ
@given(damaged())
def test_malformed_json_is_refused_in_one_line_or_what_is_still_valid_imports(data: bytes) -> None:
    run_import(data, "file")


@pytest.fixture(scope="module")
def flows() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return flow_file(Path(tmp) / "flows.mitm", 3).read_bytes()


@FUZZ
@given(data=st.data())
def test_a_damaged_flow_file_keeps_what_came_before_or_is_refused_in_one_line(flows: bytes,
                                                                              data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(flows) - 1))
    kind = data.draw(st.sampled_from(["cut", "flip", "insert"]))
    junk = data.draw(st.binary(min_size=1, max_size=6))
    damaged = flows[:at] if kind == "cut" else flows[:at] + junk + flows[at + (kind == "flip"):]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, out = root / "flows.mitm", root / "out" / "rec"
        path.write_bytes(damaged)
        err, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            code = main([str(path), "-o", str(out)])
        lines = err.getvalue().splitlines()
        if code == 0:
            assert len(load_recordings(out)) == len(stdout.getvalue().splitlines())
            return
        assert code == 2 and lines[-1].startswith(f"error: {path}: "), lines
        if stdout.getvalue():  # flows before the damage were imported: the summary, then the one error
            assert "truncated or damaged after flow" in lines[-1] and load_recordings(out)
            assert not any(line.startswith("error") for line in lines[:-1]), lines
        else:
            assert len(lines) == 1 and not (root / "out").exists(), lines
