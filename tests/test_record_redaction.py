"""A real recording (``replay record`` → mitmproxy) of secrets outside the named fields: a page that embeds a
JWT in a script and in a link's path, and a multipart login; what the session file holds instead."""

from __future__ import annotations

import base64
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from recorder.keys import ID_FILE, key_path
from recorder.redaction import Redactor, load_key
from traffic_replay.correlation import detect
from traffic_replay.correlation.secrets import needed_secrets
from traffic_replay.format import load_recordings
from traffic_replay.redacted import PLACEHOLDER

from processes import free_port, start_process, stop_process

pytestmark = pytest.mark.timeout(60)


def _b64(document: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()


def _jwt(subject: str) -> str:
    return (f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': subject, 'iat': 1767000000})}."
            + base64.urlsafe_b64encode(subject.encode() * 10).rstrip(b"=").decode())


PAGE_JWT = _jwt("magic-link-ada")
SESSION_JWT = _jwt("session-ada")
PASSWORD = "hunter2-7Qx"
API_KEY = "k-3f9a77c1"
STRIPE = "sk_test_51HqLyjWDarjtT1zdp7dcAbCdEf"
PAGE = (f'<!doctype html><html><head><script>window.__TOKEN__ = "{PAGE_JWT}";</script></head>'
        f'<body><a href="/verify/{PAGE_JWT}">verify your address</a></body></html>').encode()


class _Site(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/page":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif self.path == f"/verify/{PAGE_JWT}":
            self._send(200, b"<p>verified</p>", "text/html")
        elif self.path == "/me" and self.headers.get("Authorization") == f"Bearer {SESSION_JWT}":
            self._send(200, b'{"user": "ada"}', "application/json")
        else:
            self._send(404, b"no", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = self.path == "/login" and PASSWORD.encode() in body and API_KEY.encode() in body
        self._send(200 if ok else 401, orjson.dumps({"access_token": SESSION_JWT}) if ok else b"{}",
                   "application/json")


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, name="site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _quoted(placeholder: str) -> str:
    return placeholder.replace("«", "%C2%AB").replace("»", "%C2%BB")


def test_a_page_with_a_jwt_and_a_multipart_login_are_recorded_redacted(site: str, tmp_path: Path,
                                                                       config_home: Path) -> None:
    out = tmp_path / "rec"
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "record", str(out), "--listen-port",
                             str(port), "--no-live"], r"recording sessions into", timeout=30, merge_stderr=True)
    try:
        with httpx.Client(base_url=site, proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                          headers={"User-Agent": "patterns-test/1.0"}) as client:
            assert client.get("/page").status_code == 200
            assert client.get(f"/verify/{PAGE_JWT}").status_code == 200
            login = client.post("/login", data={"username": "ada", "password": PASSWORD, "api_key": API_KEY,
                                                "note": f"billing key {STRIPE}"},
                                files={"avatar": ("ada.svg", b"<svg>AKIA-like but short</svg>", "image/svg+xml")})
            assert login.status_code == 200
            token = login.json()["access_token"]
            assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)

    # Nothing secret anywhere in the recordings directory, the key included (it is in the config directory).
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files if p.suffix != ".json"} == {ID_FILE}
    key = load_key(out)
    assert key_path(out).is_relative_to(config_home)
    for secret in (PAGE_JWT, SESSION_JWT, PASSWORD, API_KEY, STRIPE, key.hex()):
        for path in files:
            assert secret.encode() not in path.read_bytes(), (secret, path)

    p = Redactor(key).placeholder
    (session,) = load_recordings(out)
    page, verify, login_request, me = session.requests
    assert page.response is not None and page.response.body is not None
    html = page.response.body.to_bytes().decode()
    # The JWT, in the script and the link of the page and in the path the client then asked for: one placeholder.
    assert html.count(p(PAGE_JWT)) == 2 and f'href="/verify/{p(PAGE_JWT)}"' in html
    assert verify.path == f"/verify/{_quoted(p(PAGE_JWT))}"
    # The multipart login: the password and the API key parts by name, the Stripe key by its look.
    assert login_request.body is not None
    sent = login_request.body.to_bytes()
    for value in (p(PASSWORD), p(API_KEY), f"billing key {p(STRIPE)}", "ada"):
        assert f"\r\n\r\n{value}\r\n".encode() in sent, value
    assert b"<svg>AKIA-like but short</svg>" in sent  # the upload itself, as sent
    # The session token, handed out in JSON and sent back in a header: the same placeholder, correlated live.
    assert login_request.response is not None and login_request.response.body is not None
    assert orjson.loads(login_request.response.body.to_bytes())["access_token"] == p(SESSION_JWT)
    assert dict(me.headers)["Authorization"] == f"Bearer {p(SESSION_JWT)}"
    correlated = {c.value: c for c in detect(session)}
    session_token = correlated[p(SESSION_JWT)]
    assert [(s.kind, s.key) for s in session_token.sources] == [("json", "access_token")]
    assert [(u.step, u.place, u.name) for u in session_token.uses] == [(3, "header", "Authorization")]
    # What a replay must be given: what the client typed, not what the server handed out.
    needed = {s.placeholder for s in needed_secrets([session])}
    assert needed == {p(PASSWORD), p(API_KEY), p(STRIPE)}
    assert all(PLACEHOLDER.fullmatch(n) for n in needed)
