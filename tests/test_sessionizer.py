"""The sessionizer fed exchanges directly: keys, adoption, idle gap and maximum length."""

from __future__ import annotations

import pytest

from recorder.records import ResponseData
from recorder.sessionizer import Closed, Exchange, Sessionizer
from traffic_replay.format import Session

pytestmark = pytest.mark.timeout(10)

ALICE = ("10.0.0.1", "alice")
BOB = ("10.0.0.2", "bob")


def _exchange(path: str, start: float) -> Exchange:
    return Exchange(started=start, request_end=start + 0.001, finished=start + 0.01, method="GET", scheme="http",
                    host="shop", port=80, path=path, http_version="HTTP/1.1", headers=[], body=None,
                    response=ResponseData(status=200, reason="", headers=[], duration_ms=9.0, body=None))


def _sessionizer(idle_gap: float = 30.0, max_session: float | None = None) -> tuple[Sessionizer, list[Session]]:
    closed: list[Session] = []

    def close(session: Closed) -> None:
        closed.append(session.session())

    return Sessionizer(idle_gap, close, max_session=max_session), closed


def _paths(sessions: list[Session]) -> list[list[str]]:
    return [[r.path for r in s.requests] for s in sessions]


def test_one_session_per_key_with_the_client_that_opened_it() -> None:
    sessionizer, closed = _sessionizer()
    sessionizer.add(ALICE, _exchange("/a1", 1.0))
    sessionizer.add(("header", "x-device", "d2"), _exchange("/b1", 1.5), client=BOB)
    sessionizer.add(ALICE, _exchange("/a2", 2.0))
    assert sessionizer.open_count == 2
    sessionizer.close_all()
    by_agent = {s.client.user_agent: s for s in closed}
    assert _paths([by_agent["alice"], by_agent["bob"]]) == [["/a1", "/a2"], ["/b1"]]
    assert by_agent["bob"].client.address == "10.0.0.2"


def test_adoption_merges_the_pre_cookie_session_into_the_cookie_one() -> None:
    sessionizer, closed = _sessionizer()
    merges: list[tuple[str, str]] = []
    sessionizer.on_merge = lambda absorbed, into: merges.append((absorbed, into))
    anonymous = sessionizer.add(ALICE, _exchange("/login", 1.0))
    cookie = ("cookie", "sid", "A")
    # No cookie session is open yet: the anonymous one is renamed, keeping its id.
    assert sessionizer.add(cookie, _exchange("/login-post", 2.0), client=ALICE, adopt=ALICE) == anonymous
    sessionizer.add(cookie, _exchange("/account", 3.0), client=ALICE)
    # Rotation into a session that already exists merges the two and says so.
    rotated = ("cookie", "sid", "B")
    other = sessionizer.add(rotated, _exchange("/elsewhere", 2.5), client=ALICE)
    assert sessionizer.add(rotated, _exchange("/after-rotation", 4.0), client=ALICE, adopt=cookie) == other
    assert merges == [(anonymous, other)]
    sessionizer.close_all()
    assert _paths(closed) == [["/login", "/login-post", "/elsewhere", "/account", "/after-rotation"]]
    assert closed[0].client.user_agent == "alice" and closed[0].id == other


def test_idle_gap_and_max_session_split_sessions() -> None:
    sessionizer, closed = _sessionizer(idle_gap=5.0, max_session=10.0)
    for t in (0.0, 4.0, 8.0, 12.0, 16.0, 30.0):
        sessionizer.add(ALICE, _exchange(f"/{t:g}", t))
    sessionizer.close_all()
    # 0-8 (12 is over the 10 s cap), 12-16, then 30 after more than the idle gap.
    assert _paths(closed) == [["/0", "/4", "/8"], ["/12", "/16"], ["/30"]]


def test_close_idle_closes_silent_and_too_long_sessions() -> None:
    sessionizer, closed = _sessionizer(idle_gap=5.0, max_session=10.0)
    sessionizer.add(ALICE, _exchange("/a", 0.0))
    sessionizer.add(BOB, _exchange("/b", 0.0))
    for t in (3.0, 6.0, 9.0):
        sessionizer.add(BOB, _exchange(f"/b{t:g}", t))
    sessionizer.close_idle(9.5)  # alice silent for 9.5 s: closed; bob active but not yet 10 s long
    assert _paths(closed) == [["/a"]]
    sessionizer.close_idle(10.0)  # bob has lasted 10 s
    assert _paths(closed)[1] == ["/b", "/b3", "/b6", "/b9"] and sessionizer.open_count == 0
