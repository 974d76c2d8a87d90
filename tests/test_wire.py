"""What a replay puts on the wire for text that is not ASCII, and for a live value no request may hold.

A recording holds text decoded from the UTF-8 bytes a client sent (``/café``, a header
``X-Name: José ☃``); the client library writes a request's head in Latin-1, so without care
"é" in a header leaves as one byte and "☃" cannot leave at all (a ``ValueError`` in the
middle of a task, uncounted); a path it percent-escapes as UTF-8 by itself. A live value
with a line break in it (a hostile or broken target's token) must never split the request it
is put into: that request fails, counted, and nothing of it is sent. The target here is a raw
socket server that keeps every request head as bytes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from traffic_replay.format import write_session

from factories import answered, make_request, make_session
from faultserver import Next, fault_server
from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def _replay(tmp_path: Path, port: int, requests: list) -> tuple[subprocess.CompletedProcess[str], dict]:
    recordings = tmp_path / "rec"
    recordings.mkdir()
    write_session(make_session(requests), recordings)
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(recordings), "--host", f"http://127.0.0.1:{port}",
         "-u", "1", "-r", "1", "-t", "2s", "--headless", "--no-check", "--speed", "0", "--summary-json",
         str(summary)], capture_output=True, text=True, timeout=45, cwd=REPO_ROOT)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result, orjson.loads(summary.read_bytes())


def test_text_beyond_ascii_leaves_as_the_utf8_it_was_recorded_from(tmp_path: Path) -> None:
    heads: list[bytes] = []

    def keep(conn: socket.socket, head: bytes) -> Next:
        heads.append(head)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return "keep"

    with fault_server(keep) as server:
        headers = [("User-Agent", "test/1.0"), ("X-Name", "José ☃")]
        result, summary = _replay(tmp_path, server.port, [make_request("/café/☃?q=ü", headers=headers,
                                                                       port=server.port)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary["total"]["requests"] > 0 and summary["total"]["failures"] == 0, summary["total"]
    first = heads[0].split(b"\r\n")
    assert first[0] == b"GET /caf%C3%A9/%E2%98%83?q=%C3%BC HTTP/1.1"  # the library's own escapes, of UTF-8
    assert "X-Name: José ☃".encode() in first


def test_a_live_value_with_a_line_break_fails_its_request_and_sends_nothing_of_it(tmp_path: Path) -> None:
    heads: list[bytes] = []

    def hostile(conn: socket.socket, head: bytes) -> Next:
        heads.append(head)
        body = json.dumps({"token": "tok\r\nX-Evil: 1"}).encode() if head.startswith(b"GET /login") else b"{}"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        return "keep"

    with fault_server(hostile) as server:
        login = answered(make_request("/login", port=server.port), '{"token": "tok-5f2a9c81e3b7d046"}')
        me = make_request("/me", port=server.port, offset_ms=10,
                          headers=[("User-Agent", "test/1.0"), ("X-Token", "tok-5f2a9c81e3b7d046")])
        result, summary = _replay(tmp_path, server.port, [login, me])
    assert result.returncode == 1, result.stderr[-2000:]
    assert not any(b"X-Evil" in head for head in heads), heads[:3]
    assert all(head.startswith(b"GET /login") for head in heads), "the second request must never leave"
    reasons = {f["error"] for f in summary["failures"]}
    assert len(reasons) == 1 and reasons.pop().startswith("session 'test session' step 2: cannot be sent: "), reasons
    assert summary["sessions"]["failed"] > 0


def test_cookies_a_target_sets_go_back_to_it_within_the_visit_and_not_into_the_next(tmp_path: Path) -> None:
    # The replay's cookie jar skips its work while it holds no cookie and the answer sets none:
    # a cookie set in any spelling of the header, on a later answer of the visit, still goes back.
    heads: list[bytes] = []

    def sets_on_b(conn: socket.socket, head: bytes) -> Next:
        heads.append(head)
        cookie = b"sEt-CoOkIe: sid=s%d; Path=/\r\n" % len(heads) if head.startswith(b"GET /b ") else b""
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + cookie + b"Content-Length: 2\r\n\r\nok")
        return "keep"

    with fault_server(sets_on_b) as server:
        result, summary = _replay(tmp_path, server.port, [make_request(p, port=server.port, offset_ms=i)
                                                          for i, p in enumerate(("/a", "/b", "/c"))])
    assert result.returncode == 0, result.stderr[-2000:]
    visits = [heads[i:i + 3] for i in range(0, len(heads) - 2, 3)]
    assert len(visits) > 3 and all(v[0].startswith(b"GET /a ") for v in visits), heads[:6]
    for n, (a, b, c) in enumerate(visits):
        cookies = [line for line in c.split(b"\r\n") if line.lower().startswith(b"cookie:")]
        assert cookies == [b"Cookie: sid=s%d" % (3 * n + 2)], (n, c)
        assert b"cookie:" not in a.lower() and b"cookie:" not in b.lower(), (n, a, b)
