"""The detector on sessions: JSON, HTML form and meta, Location, header tokens, cookies."""

from __future__ import annotations

import pytest

from traffic_replay.correlation import Correlation, detect, find_token, unsourced_values
from traffic_replay.correlation.detection import looks_dynamic
from traffic_replay.format import Request

from factories import answered, make_request, make_session

pytestmark = pytest.mark.timeout(10)


def found(requests: list[Request]) -> dict[str, Correlation]:
    return {c.value: c for c in detect(make_session(requests))}


def describe(c: Correlation) -> tuple[list[str], list[tuple[int, str, str]]]:
    return [f"{s.step} {s.describe()}" for s in c.sources], [(u.step, u.place, u.name) for u in c.uses]


def test_a_created_id_in_json_is_carried_to_later_paths() -> None:
    c = found([
        answered(make_request("/api/listings", "POST", 201, body=b'{"name": "lamp"}', content_type="application/json"),
                 '{"listing": {"id": 1042, "name": "lamp"}}'),
        make_request("/api/listings/1042"),
        make_request("/listings/1042?view=full"),
        make_request("/api/listings/10420"),  # a longer id is another id
    ])
    assert describe(c["1042"]) == (["0 JSON listing.id"], [(1, "path", ""), (2, "path", "")])


def test_a_hidden_input_is_carried_to_a_form_body() -> None:
    page = '<form><input type="hidden" name="csrf_token" value="tok-9f8e7d6c5b"><input name="q"></form>'
    c = found([
        answered(make_request("/signin"), page, "text/html; charset=utf-8"),
        make_request("/signin", "POST", 302, body=b"username=lin&csrf_token=tok-9f8e7d6c5b",
                     content_type="application/x-www-form-urlencoded"),
    ])
    assert describe(c["tok-9f8e7d6c5b"]) == (["0 input csrf_token"], [(1, "body", "")])


def test_a_meta_token_and_a_header_token_go_to_request_headers() -> None:
    c = found([
        answered(make_request("/sell"), '<meta name="csrf-token" content="m3ta-t0ken-value">', "text/html"),
        answered(make_request("/api/session"), "", headers=[("X-CSRF-Token", "hdr-7777-token")]),
        make_request("/api/listings", "POST", headers=[("X-CSRF-Token", "m3ta-t0ken-value"),
                                                      ("X-Other", "hdr-7777-token")]),
    ])
    assert describe(c["m3ta-t0ken-value"]) == (["0 meta csrf-token"], [(2, "header", "X-CSRF-Token")])
    assert describe(c["hdr-7777-token"]) == (["1 header X-CSRF-Token"], [(2, "header", "X-Other")])


def test_an_id_in_a_location_header_is_carried_over() -> None:
    c = found([
        answered(make_request("/orders", "POST", 303), "", headers=[("Location", "/orders/55123?tab=items")],
                 status=303),
        make_request("/orders/55123?tab=items"),
    ])
    sources, uses = describe(c["55123"])
    assert sources == ["0 header Location"] and uses == [(1, "path", "")]
    source = c["55123"].sources[0]
    assert (source.prefix, source.suffix) == ("/orders/", "?tab=items")


def test_a_bearer_token_from_json_goes_to_authorization() -> None:
    c = found([
        answered(make_request("/api/token", "POST"), '{"auth": {"access_token": "a1b2c3d4e5f6a7b8c9d0"}}'),
        make_request("/api/me", headers=[("Authorization", "Bearer a1b2c3d4e5f6a7b8c9d0")]),
    ])
    assert describe(c["a1b2c3d4e5f6a7b8c9d0"]) == (["0 JSON auth.access_token"], [(1, "header", "Authorization")])


def test_a_cookie_value_sent_in_a_header_is_read_from_the_cookie() -> None:
    c = found([
        answered(make_request("/"), "<p>hi</p>", "text/html",
                 headers=[("Set-Cookie", "XSRF-TOKEN=x5rf-123456; Path=/")]),
        make_request("/api/save", "POST", headers=[("X-XSRF-TOKEN", "x5rf-123456")]),
    ])
    assert describe(c["x5rf-123456"]) == (["0 cookie XSRF-TOKEN"], [(1, "header", "X-XSRF-TOKEN")])


def test_values_the_client_sent_first_and_plain_words_are_not_correlated() -> None:
    c = found([
        answered(make_request("/api/cart", "POST", body=b'{"item_id": 4711, "note": "books"}',
                              content_type="application/json"),
                 '{"cart": [{"item_id": 4711, "category": "books"}]}'),
        make_request("/api/items/4711"),
        make_request("/search?category=books"),
    ])
    assert c == {}


def test_form_encoded_values_are_found_encoded() -> None:
    c = found([
        answered(make_request("/form"), '<input type="hidden" name="state" value="a+b/c==12345678">', "text/html"),
        make_request("/next", "POST", body=b"state=a%2Bb%2Fc%3D%3D12345678",
                     content_type="application/x-www-form-urlencoded"),
    ])
    assert [(u.step, u.place, u.encoding) for u in c["a+b/c==12345678"].uses] in (
        [(1, "body", "quote_plus")], [(1, "body", "quote")])


def test_dynamic_looking_values_without_a_source_are_warned_about() -> None:
    session = make_session([make_request("/api/orders/7f3e9a1c2b4d4e5f8a9b")])
    assert [(u.step, u.value) for u in unsourced_values(session, [])] == [(0, "7f3e9a1c2b4d4e5f8a9b")]


@pytest.mark.parametrize(("value", "dynamic"), [("1000", True), ("7", False), ("42", True), ("books", False),
                                                ("ab12", True), ("abcdefghijklmnopq", True), ("true", False)])
def test_what_looks_dynamic(value: str, dynamic: bool) -> None:
    assert looks_dynamic(value) is dynamic


def test_find_token_respects_boundaries() -> None:
    assert find_token("/items/1000", "1000") == 7
    assert find_token("/items/10001", "1000") == -1
    assert find_token("id=x1000&id=1000", "1000") == 12


def test_form_encoded_words_are_not_mistaken_for_tokens() -> None:
    session = make_session([make_request("/checkout", "POST", body=b"street=12+Analytical+Way&city=Leeds",
                                         content_type="application/x-www-form-urlencoded")])
    assert unsourced_values(session, []) == []
