"""Plain exchanges against the format's models: the same bodies, the same session file bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.records import BodyData, Exchange, ResponseData, body_data, validated
from recorder.sessionizer import build_session
from recorder.writer import default_head, write_exchanges
from traffic_replay.format import Body, write_session

pytestmark = pytest.mark.timeout(10)

BODIES = [(b'{"a": "caf\xc3\xa9"}', "application/json", None), (b"\xff\xfe binary", "image/png", None),
          (b"plain", None, None), (b"\xc3\xa9\xc3\xa9", "text/plain", 3), (b"0123456789", "text/html", 4),
          (b"\xff not utf-8", "text/plain", None), (b"<x/>", "application/atom+xml", None),
          (b"--b\r\n\r\npw\r\n--b--", "multipart/form-data; boundary=b", None),
          (b"--b\r\n\r\n\x89PNG\r\n--b--", "multipart/form-data; boundary=b", None)]


@pytest.mark.parametrize(("content", "ctype", "cap"), BODIES)
def test_body_data_is_what_body_from_bytes_makes(content: bytes, ctype: str | None, cap: int | None) -> None:
    plain = body_data(content, ctype, cap)
    assert Body(**plain._asdict()) == Body.from_bytes(content, ctype, cap=cap)
    assert plain.to_bytes() == Body.from_bytes(content, ctype, cap=cap).to_bytes()


def _exchange(path: str, started: float, body: BodyData | None = None) -> Exchange:
    return Exchange(started, started + 0.001, started + 0.0123456, "POST" if body else "GET", "http", "shop", 8080,
                    path, "HTTP/1.1", [("Host", "shop:8080"), ("X-Dup", "1"), ("X-Dup", "2")], body,
                    ResponseData(201, "Created", [("Content-Type", "application/json")], 9.25,
                                 body_data(b'{"id": 7}', "application/json")))


def test_a_session_written_line_by_line_is_the_file_write_session_writes(tmp_path: Path) -> None:
    exchanges = [_exchange("/a?x=1", 100.0), _exchange("/b", 100.5, body_data(b"\x00\xff", "application/x"))]
    client = ("10.0.0.1", "alice/1.0 (X11)")
    (tmp_path / "model").mkdir()
    (tmp_path / "plain").mkdir()
    expected = write_session(build_session(client, exchanges, "s-1"), tmp_path / "model").read_bytes()
    assert write_exchanges(tmp_path / "plain", default_head("s-1", client, exchanges), exchanges).read_bytes() \
        == expected


def test_validated_refuses_what_the_models_refuse() -> None:
    good = _exchange("/a", 100.0)
    assert validated(good) is good
    with pytest.raises(ValueError):
        validated(good._replace(path="no-slash"))
