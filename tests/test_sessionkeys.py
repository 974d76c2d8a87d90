"""The ``--session-key`` spec and the key each exchange gets (pure functions)."""

from __future__ import annotations

import pytest

from recorder.sessionkeys import Keyed, KeySpec, key_for, parse_session_key, request_cookie, response_cookie

pytestmark = pytest.mark.timeout(10)

CLIENT = ("127.0.0.1", "agent/1")


@pytest.mark.parametrize(("text", "spec"), [
    ("client", KeySpec("client")),
    (" client ", KeySpec("client")),
    ("cookie:sid", KeySpec("cookie", "sid")),
    ("cookie:SessionID", KeySpec("cookie", "SessionID")),  # cookie names are case-sensitive
    ("header:X-Device-Id", KeySpec("header", "x-device-id")),  # header names are not
])
def test_specs_parse(text: str, spec: KeySpec) -> None:
    assert parse_session_key(text) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("", "is not 'client'"),
    ("ip", "is not 'client'"),
    ("cookie", "is not 'client'"),
    ("query:id", "is not 'client'"),
    ("cookie:", "not a valid cookie name"),
    ("header:bad name", "not a valid header name"),
])
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_session_key(text)


def test_cookie_values_are_read_from_requests_and_responses() -> None:
    assert request_cookie("sid", ["a=1; sid=abc; b=2"]) == "abc"
    assert request_cookie("sid", ["a=1", 'sid="q"']) == "q"
    assert request_cookie("sid", ["sids=abc; xsid=1"]) is None
    assert request_cookie("sid", ["sid="]) is None
    assert response_cookie("sid", ["other=1", "sid=new; Path=/; HttpOnly"]) == "new"
    # Deleting a cookie (empty value, or Max-Age=0) is not a new session.
    assert response_cookie("sid", ["sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"]) is None
    assert response_cookie("sid", ["sid=x; Max-Age=0"]) is None
    assert response_cookie("sid", ["sid=x; Max-Age=3600"]) == "x"


def test_client_key_is_address_and_agent() -> None:
    assert key_for(KeySpec("client"), CLIENT, []) == Keyed(CLIENT)


def test_header_key_falls_back_to_the_client() -> None:
    spec = parse_session_key("header:X-Device-Id")
    assert key_for(spec, CLIENT, ["dev-1"]) == Keyed(("header", "x-device-id", "dev-1"))
    assert key_for(spec, CLIENT, []) == Keyed(CLIENT)


def test_cookie_key_adopts_the_requests_sent_before_the_cookie() -> None:
    spec = parse_session_key("cookie:sid")
    # Before login: the client's own key.
    assert key_for(spec, CLIENT, [], []) == Keyed(CLIENT)
    # The login response sets the cookie: that exchange starts the cookie's session, adopting the client's.
    assert key_for(spec, CLIENT, [], ["sid=A; Path=/"]) == Keyed(("cookie", "sid", "A"), adopt=CLIENT)
    # Afterwards the cookie is sent back.
    assert key_for(spec, CLIENT, ["sid=A"], []) == Keyed(("cookie", "sid", "A"))
    # The same value set again is no change.
    assert key_for(spec, CLIENT, ["sid=A"], ["sid=A"]) == Keyed(("cookie", "sid", "A"))
    # Rotation (a new value while the old one was sent) carries the old session over.
    assert key_for(spec, CLIENT, ["sid=A"], ["sid=B"]) == Keyed(("cookie", "sid", "B"), adopt=("cookie", "sid", "A"))
    # Logout deletes it: the exchange still belongs to the session that sent it.
    assert key_for(spec, CLIENT, ["sid=B"], ["sid=; Max-Age=0"]) == Keyed(("cookie", "sid", "B"))
