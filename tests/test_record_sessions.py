"""Session grouping through the real recorder: cookie- and header-keyed sessions of two
interleaved users, idle-gap splitting and the maximum session length."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from traffic_replay.format import Session, load_recordings

from processes import start_recorder, stop_process, target_log

pytestmark = pytest.mark.timeout(90)

# Two users behind one address with one browser: the client key cannot tell them apart.
AGENT = {"User-Agent": "shop-browser/1.0"}


Drive = Callable[[str], None]
"""Sends a user's traffic through the proxy at the given URL."""


def _record(out: Path, *args: str, drive: Drive) -> list[Session]:
    proc, port = start_recorder(out, *args)
    try:
        drive(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    return load_recordings(out)


def _user(proxy: str, demo_target: str, extra: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=demo_target, proxy=proxy, trust_env=False, headers={**AGENT, **(extra or {})})


def _who(session: Session) -> str:
    """The user of a session, read from the username in its login form (not a secret)."""
    logins = [r.body.to_bytes() for r in session.requests if r.method == "POST" and r.path == "/login" and r.body]
    assert len(logins) == 1, [r.path for r in session.requests]
    return logins[0].decode().split("&")[0].removeprefix("username=")


def _two_users_log_in_and_shop(demo_target: str) -> Drive:
    def drive(proxy: str) -> None:
        with _user(proxy, demo_target) as ada, _user(proxy, demo_target) as bob:
            for name, user in (("ada", ada), ("bob", bob)):
                assert user.get("/login").status_code == 200
                login = user.post("/login", data={"username": name, "password": "demo"})
                assert login.status_code == 302 and "sid" in login.cookies
            # Interleaved, as two real users would be.
            for step in range(2):
                for user in (ada, bob):
                    assert user.get("/account").status_code == 200
                    assert user.post("/api/cart", json={"item_id": step + 1, "qty": 1}).status_code == 201
    return drive


SHOPPING = ["GET /login", "POST /login", "GET /account", "POST /api/cart", "GET /account", "POST /api/cart"]


def test_cookie_keyed_sessions_separate_two_users_and_keep_their_pre_login_requests(
        demo_target: str, tmp_path: Path) -> None:
    sessions = _record(tmp_path / "rec", "--session-key", "cookie:sid",
                       drive=_two_users_log_in_and_shop(demo_target))
    assert len(target_log(demo_target)) == 2 * len(SHOPPING)
    by_user = {_who(s): s for s in sessions}
    assert sorted(by_user) == ["ada", "bob"]
    for session in sessions:
        # The login page, fetched before the cookie existed, is in the session of the user who then logged in.
        assert [f"{r.method} {r.path}" for r in session.requests] == SHOPPING
        assert [r.response.status if r.response else None for r in session.requests] == [200, 302, 200, 201, 200, 201]


def test_the_client_key_cannot_tell_those_users_apart(demo_target: str, tmp_path: Path) -> None:
    sessions = _record(tmp_path / "rec", drive=_two_users_log_in_and_shop(demo_target))
    assert [len(s.requests) for s in sessions] == [2 * len(SHOPPING)]


def test_header_keyed_sessions(demo_target: str, tmp_path: Path) -> None:
    def drive(proxy: str) -> None:
        with _user(proxy, demo_target, {"X-Device-Id": "phone-1"}) as phone, \
                _user(proxy, demo_target, {"X-Device-Id": "tablet-2"}) as tablet, \
                _user(proxy, demo_target) as anonymous:
            for i in range(1, 4):
                for device in (phone, tablet):
                    assert device.get(f"/api/items/{i}").status_code == 200
            assert anonymous.get("/api/items?page=1").status_code == 200

    sessions = _record(tmp_path / "rec", "--session-key", "header:X-Device-Id", drive=drive)
    paths = sorted([r.path for r in s.requests] for s in sessions)
    # One session per device; the request without the header falls back to its client's own session.
    assert paths == [["/api/items/1", "/api/items/2", "/api/items/3"], ["/api/items/1", "/api/items/2", "/api/items/3"],
                     ["/api/items?page=1"]]
    devices = sorted(tuple(sorted({dict(r.headers)["X-Device-Id"] for r in s.requests}))
                     for s in sessions if len(s.requests) == 3)
    assert devices == [("phone-1",), ("tablet-2",)]


def test_idle_gap_splits_and_writes_while_recording(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc, port = start_recorder(out, "--idle-gap", "0.5")
    try:
        with _user(f"http://127.0.0.1:{port}", demo_target) as user:
            assert user.get("/api/items/1").status_code == 200
            assert user.get("/api/items/2").status_code == 200
            # Silent for longer than the gap: the first session is written while the proxy keeps running.
            deadline = time.monotonic() + 10
            while not list(out.glob("*.json")) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(list(out.glob("*.json"))) == 1
            assert user.get("/api/items/3").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    assert sorted([r.path for r in s.requests] for s in load_recordings(out)) == [
        ["/api/items/1", "/api/items/2"], ["/api/items/3"]]


def test_max_session_splits_a_long_session(demo_target: str, tmp_path: Path) -> None:
    def drive(proxy: str) -> None:
        with _user(proxy, demo_target) as user:
            for i, pause in enumerate([0.3, 1.2, 0.3, 0.0], start=1):
                assert user.get(f"/api/items/{i}").status_code == 200
                time.sleep(pause)

    sessions = _record(tmp_path / "rec", "--max-session", "1", drive=drive)
    # Request 3 starts 1.5 s after the session began: past the 1 s cap, so it starts a new one.
    assert sorted([r.path for r in s.requests] for s in sessions) == [
        ["/api/items/1", "/api/items/2"], ["/api/items/3", "/api/items/4"]]
