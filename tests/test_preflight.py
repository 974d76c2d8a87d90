"""The preflight check provokes nothing: it probes only requests that need no session's state, or only connects."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from traffic_replay.checks import MAX_PROBES, carries_credentials, probe_requests
from traffic_replay.format import Request, Session, write_session

from factories import answered, make_request, make_session
from processes import REPO_ROOT
from servers import self_signed_certificate, tls_api

pytestmark = pytest.mark.timeout(90)

RECORDED_TOKEN = "tok-5f0c1e2d3b4a69788796a5b4"


class _TokenApi(ThreadingHTTPServer):
    """POST /api/login hands out a fresh bearer token; GET /api/profile wants it; GET /api/health is public.

    ``log`` is what reached it, in order: ``("connect",)`` for each connection accepted, and
    ``(method, path, status)`` for each request answered.
    """

    daemon_threads = True
    log: list[tuple[Any, ...]]
    tokens: set[str]
    lock: threading.Lock

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.log.append(("connect",))
        super().process_request(request, client_address)


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TokenApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        body = orjson.dumps(document)
        with self.server.lock:
            self.server.log.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        sent = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path != "/api/login" or sent.get("password") != "pw-ada":
            return self._answer(401, {"error": "wrong username or password"})
        token = f"tok-{secrets.token_hex(12)}"
        with self.server.lock:
            self.server.tokens.add(token)
        self._answer(200, {"token": token})

    def do_GET(self) -> None:
        if self.path == "/api/health":
            return self._answer(200, {"ok": True})
        if self.path == "/api/profile":
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self.server.tokens:
                return self._answer(401, {"error": "bearer token required"})
            return self._answer(200, {"user": "ada"})
        self._answer(404, {"error": "not found"})


@contextmanager
def token_api() -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """The token API on a free loopback port, served by a thread: (base URL, its log)."""
    server = _TokenApi(("127.0.0.1", 0), _TokenHandler)
    server.log, server.tokens, server.lock = [], set(), threading.Lock()
    thread = threading.Thread(target=server.serve_forever, name="token api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _json(request: Request, document: dict[str, Any], status: int = 200) -> Request:
    return answered(request, orjson.dumps(document).decode(), status=status)


def _login() -> Request:
    return _json(make_request("/api/login", "POST", body=b'{"username":"ada","password":"pw-ada"}',
                              content_type="application/json"), {"token": RECORDED_TOKEN})


def _profile(offset_ms: float = 10.0) -> Request:
    request = make_request("/api/profile", offset_ms=offset_ms, headers=[
        ("Host", "127.0.0.1:8000"), ("Authorization", f"Bearer {RECORDED_TOKEN}")])
    return _json(request, {"user": "ada"})


def _recording(tmp_path: Path, *requests: Request) -> Path:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(make_session(list(requests), name="token user"), directory)
    return directory


def replay(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``replay ARGS`` as a user types it, with no ``REPLAY_*`` variables leaking in from the test run."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env={**clean, **(env or {})})


def _before_first_login(log: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    first = next(i for i, entry in enumerate(log) if entry[:2] == ("POST", "/api/login"))
    return log[:first]


def test_the_check_probes_a_public_get_not_the_profile_behind_the_token(tmp_path: Path) -> None:
    recordings = _recording(tmp_path, _login(), _profile(), _json(make_request("/api/health", offset_ms=20), {}))
    with token_api() as (url, log):
        result = replay("run", str(recordings), "--host", url, "--headless", "-t", "2s", "-u", "1", "--speed", "0")
        assert result.returncode == 0, result.stderr[-3000:]
        before = _before_first_login(log)
    assert [e for e in before if e != ("connect",)] == [("GET", "/api/health", 200)], before
    assert not [e for e in log if len(e) == 3 and 400 <= e[2] < 500], "nothing in the replay was refused either"
    assert f"target ok: GET {url}/api/health answered 200 in " in result.stderr
    assert "/api/profile" not in result.stderr.split("target ok:")[1].splitlines()[0]


def test_replay_check_says_what_it_probed(tmp_path: Path) -> None:
    recordings = _recording(tmp_path, _login(), _profile(), _json(make_request("/api/health", offset_ms=20), {}))
    with token_api() as (url, log):
        result = replay("check", "--host", url, str(recordings))
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    assert line.startswith(f"ok  GET {url}/api/health answered 200 in ") and line.endswith(" ms"), line
    assert [e for e in log if e != ("connect",)] == [("GET", "/api/health", 200)]


def test_with_no_request_to_probe_the_check_only_connects(tmp_path: Path) -> None:
    recordings = _recording(tmp_path, _login(), _profile())
    with token_api() as (url, log):
        result = replay("run", str(recordings), "--host", url, "--headless", "-t", "2s", "-u", "1", "--speed", "0")
        assert result.returncode == 0, result.stderr[-3000:]
        before = _before_first_login(log)
        replayed = len(log)
        checked = replay("check", "--host", url, str(recordings))
        by_check = log[replayed:]
    assert before and set(before) == {("connect",)}, f"connected, and sent no HTTP request: {before}"
    hostport = url.removeprefix("http://")
    line = next(line for line in result.stderr.splitlines() if line.startswith("target ok:"))
    assert line.startswith(f"target ok: connected to {hostport} in ") and line.endswith(
        " ms, no request sent: every recorded GET needs a session's state"), line
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok  connected to {hostport} in "), checked.stdout
    assert by_check == [("connect",)], "replay check sent no request either"


def test_over_tls_the_connection_check_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    recordings = _recording(tmp_path, _login(), _profile())
    with tls_api(cert, key) as (url, seen):
        untrusted = replay("check", "--host", url, str(recordings))
        trusted = replay("check", "--host", url, str(recordings), env={"SSL_CERT_FILE": str(cert)})
    assert untrusted.returncode == 3, untrusted.stderr
    [error] = untrusted.stderr.strip().splitlines()
    assert error.startswith("error: ") and "TLS check failed" in error and "certificate" in error, error
    assert trusted.returncode == 0, trusted.stderr
    assert f"connected to {url.removeprefix('https://')} (TLS verified) in " in trusted.stdout, trusted.stdout
    assert seen == [], "no HTTP request, trusted or not"


def test_a_target_that_refuses_connections_is_one_error_line(tmp_path: Path) -> None:
    recordings = _recording(tmp_path, _login(), _profile())
    with token_api() as (url, _):
        pass  # stopped: its port refuses now
    result = replay("run", str(recordings), "--host", url, "--headless", "-t", "2s", "-u", "1")
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {url}: cannot connect"), line


def _session(*requests: Request) -> Session:
    return make_session(list(requests))


def test_what_needs_a_sessions_state_is_never_probed() -> None:
    public = make_request("/public", offset_ms=50)
    redacted_query = make_request("/search?key=%C2%ABredacted%3A0a1b2c3d%C2%BB")
    with_key = make_request("/data", headers=[("Host", "127.0.0.1:8000"), ("X-API-Key", "k-123")])
    with_cookie = make_request("/account", headers=[("Cookie", "sid=abc")])
    token_in_query = make_request("/feed?access_token=abc")
    assert all(map(carries_credentials, (redacted_query, with_key, with_cookie, token_in_query)))
    assert not carries_credentials(public) and not carries_credentials(make_request("/books?author=lin"))
    created = _json(make_request("/api/orders", "POST"), {"order": {"id": "ord-98765"}})
    order = make_request("/api/orders/ord-98765", offset_ms=10)  # the id the POST handed out: correlated
    refused = make_request("/private", status=403)
    elsewhere = make_request("/", host="cdn.test", port=443)
    head = make_request("/ping", method="HEAD", offset_ms=60)
    sessions = [
        _session(created, order, redacted_query, with_key, with_cookie, token_in_query, refused, public),
        _session(elsewhere, head, make_request("/x", host="127.0.0.1")),
        _session(created, order),
    ]
    assert probe_requests(sessions) == [("GET", "/public"), ("HEAD", "/ping")]


def test_the_check_probes_a_handful_of_paths_however_many_sessions() -> None:
    sessions = [make_session([make_request(f"/pages/{n}")], id=f"s{n}") for n in range(40)]
    assert probe_requests(sessions) == [("GET", f"/pages/{n}") for n in range(MAX_PROBES)]
