from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest

from traffic_replay.errors import RecordingError, RecordingsInvalid, SessionFileError
from traffic_replay.format import (
    Body,
    Session,
    load_recordings,
    load_session,
    session_schema,
    write_session,
)

from factories import make_request, make_session

pytestmark = pytest.mark.timeout(30)


def _plain(session: Session) -> dict[str, Any]:
    """A session as the JSON document a file holds."""
    document: dict[str, Any] = orjson.loads(msgspec.json.encode(session))
    return document


def test_write_then_load_gives_the_same_session(tmp_path: Path) -> None:
    session = make_session([
        make_request("/login", "POST", 302, body=b"user=a&pw=b", content_type="application/x-www-form-urlencoded"),
        make_request("/img", body=bytes(range(256)), content_type="image/png", offset_ms=12.5),
    ])
    path = write_session(session, tmp_path)
    assert path == tmp_path / "s1.json"
    assert load_session(path) == session
    assert [p.name for p in tmp_path.iterdir()] == ["s1.json"], "no temp file is left behind"


def test_bodies_are_text_when_utf8_and_base64_otherwise() -> None:
    text = Body.from_bytes("héllo".encode(), "text/plain")
    binary = Body.from_bytes(b"\xff\x00\xfe", "application/octet-stream")
    assert (text.encoding, text.data) == ("text", "héllo")
    assert binary.encoding == "base64" and binary.to_bytes() == b"\xff\x00\xfe"
    capped = Body.from_bytes(b"x" * 100, "text/plain", cap=10)
    assert capped.truncated and capped.size == 100 and capped.data == "x" * 10


def test_duplicate_headers_keep_their_order(tmp_path: Path) -> None:
    headers = [("Accept", "a"), ("X-Dup", "1"), ("X-Dup", "2")]
    path = write_session(make_session([make_request(headers=headers)]), tmp_path)
    assert load_session(path).requests[0].headers == headers


def test_a_bad_field_is_named_with_the_path(tmp_path: Path) -> None:
    data = _plain(make_session())
    data["requests"][0]["method"] = "get me"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(data))
    with pytest.raises(SessionFileError) as info:
        load_session(bad)
    assert str(info.value).startswith(f"{bad}: field 'requests.0.method'")


def test_every_bad_file_is_reported_not_only_the_first(tmp_path: Path) -> None:
    write_session(make_session(id="good"), tmp_path)
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text('{"format_version": 1}')
    with pytest.raises(RecordingsInvalid) as info:
        load_recordings(tmp_path)
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert "not valid JSON" in lines[0]


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such directory"):
        load_recordings(tmp_path / "nope")
    with pytest.raises(RecordingError, match="no session files"):
        load_recordings(tmp_path)


def test_hidden_temp_files_are_not_sessions(tmp_path: Path) -> None:
    write_session(make_session(), tmp_path)
    (tmp_path / ".s2.123.tmp").write_text("partial")
    (tmp_path / ".hidden.json").write_text("partial")
    assert [s.id for s in load_recordings(tmp_path)] == ["s1"]


def test_schema_describes_the_file() -> None:
    schema = session_schema()
    assert schema["title"] == "Session"
    assert {"id", "requests", "started_at"} <= set(schema["required"])  # type: ignore[operator]
    jsonschema.validate(_plain(make_session()), schema)
    bad = _plain(make_session())
    bad["requests"][0]["port"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_session_file_is_compact_json_with_one_request_per_line(tmp_path: Path) -> None:
    session = make_session([make_request("/a"), make_request("/b", "POST", body=b'{"x": 1}',
                                                             content_type="application/json")])
    path = write_session(session, tmp_path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4 and lines[0].endswith(b'"requests":[') and lines[-1] == b"]}"
    assert [orjson.loads(line.rstrip(b","))["path"] for line in lines[1:3]] == ["/a", "/b"]
    assert load_session(path) == session
    assert orjson.loads(path.read_bytes()) == _plain(session)


def test_the_compact_layout_and_any_other_load_the_same(tmp_path: Path) -> None:
    session = make_session([make_request(f"/items/{i}", body=b'{"n": 1}', content_type="application/json")
                            for i in range(5)])
    compact = write_session(session, tmp_path)
    pretty = tmp_path / "pretty.json"
    pretty.write_bytes(orjson.dumps(_plain(session), option=orjson.OPT_INDENT_2))
    one_line = tmp_path / "line.json"
    one_line.write_bytes(orjson.dumps(_plain(session)))
    assert load_session(compact) == load_session(pretty) == load_session(one_line) == session


def test_a_bad_field_in_a_request_line_is_named_as_in_any_other_layout(tmp_path: Path) -> None:
    path = write_session(make_session([make_request(f"/items/{i}") for i in range(5)]), tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"port":8000', b'"port":0', 4).replace(b'"port":0', b'"port":8000', 3))
    with pytest.raises(SessionFileError) as info:
        load_session(path)
    assert str(info.value) == f"{path}: field 'requests.3.port': Expected `int` >= 1"
    path = write_session(make_session([make_request(f"/items/{i}") for i in range(5)]), tmp_path)
    path.write_bytes(path.read_bytes()[:-20])  # cut short
    with pytest.raises(SessionFileError, match="not valid JSON"):
        load_session(path)


def test_what_repeats_across_a_recording_is_held_once(tmp_path: Path) -> None:
    headers = [("Host", "127.0.0.1:8000"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")]
    for n in range(2):
        write_session(make_session([make_request(f"/a/{i}", headers=headers) for i in range(3)], id=f"s{n}"),
                      tmp_path)
    requests = [r for s in load_recordings(tmp_path) for r in s.requests]
    assert all(r.headers[1] is requests[0].headers[1] for r in requests)
    assert all(r.method is requests[0].method and r.host is requests[0].host for r in requests)
