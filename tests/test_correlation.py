"""The detector on sessions: JSON, HTML form and meta, Location, header tokens, cookies."""

from __future__ import annotations

import orjson
import pytest

from traffic_replay.correlation import Correlation, analyse, detect, find_token, unsourced_values
from traffic_replay.format import Request
from traffic_replay.inspection import inspect_sessions

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


def test_find_token_respects_boundaries() -> None:
    assert find_token("/items/1000", "1000") == 7
    assert find_token("/items/10001", "1000") == -1
    assert find_token("id=x1000&id=1000", "1000") == 12


def test_form_encoded_words_are_not_mistaken_for_tokens() -> None:
    session = make_session([make_request("/checkout", "POST", body=b"street=12+Analytical+Way&city=Leeds",
                                         content_type="application/x-www-form-urlencoded")])
    assert unsourced_values(session, []) == []


def _json(path: str, method: str, status: int, answer: str, body: dict[str, object] | None = None,
          headers: list[tuple[str, str]] | None = None) -> Request:
    raw = orjson.dumps(body) if body is not None else None
    return answered(make_request(path, method, status, body=raw, content_type="application/json" if raw else None),
                    answer, headers=headers, status=status)


def uses_of(c: dict[str, Correlation], value: str) -> list[tuple[int, int, str]]:
    """(source step, use step, place) of every use of ``value``, over all its correlations."""
    return sorted((x.sources[0].step, u.step, u.describe()) for x in c.values() for u in x.uses if x.value == value)


def detected(requests: list[Request]) -> dict[str, Correlation]:
    return {f"{c.value}@{c.sources[0].step} {c.sources[0].key}": c for c in detect(make_session(requests))}


def test_a_first_id_of_1_on_a_fresh_database_comes_from_its_creation_not_the_profile() -> None:
    c = detected([
        _json("/api/login", "POST", 200, '{"token": "t0k3n-a1b2c3d4e5f6a7b8", "user": {"id": 1, "name": "ann"}}',
              {"username": "ann"}),
        _json("/api/items", "POST", 201, '{"id": 1, "owner": 1}', {"title": "first"},
              headers=[("Location", "/api/items/1")]),
        _json("/api/items/1", "GET", 200, '{"id": 1, "owner": 1, "title": "first"}'),
        _json("/api/items/1", "PATCH", 200, '{"id": 1}', {"title": "renamed", "quantity": 1}),
        make_request("/api/users/1/settings"),
        make_request("/api/items/1", "DELETE", 204),
    ])
    assert uses_of(c, "1") == [(0, 4, "path"), (1, 2, "path"), (1, 3, "path"), (1, 5, "path")]


@pytest.mark.parametrize("name", ["untitled.txt", "untitled3.txt", "Untitled Folder"])
def test_a_name_the_server_chose_is_carried_whole_and_inside_a_path_the_client_composes(name: str) -> None:
    encoded = name.replace(" ", "%20")
    c = detected([
        _json("/api/contents", "POST", 201, orjson.dumps({"name": name, "path": name, "type": "file"}).decode()),
        _json(f"/api/contents/{encoded}", "PATCH", 200, "{}", {"path": f"done/{name}"}),
        make_request(f"/api/contents/done/{encoded}", "DELETE", 204),
    ])
    assert uses_of(c, name) == [(0, 1, "body JSON path"), (0, 1, "path"), (0, 2, "path")]
    assert sorted(u.span for x in c.values() for u in x.uses) == [  # type: ignore[type-var]
        (5, 5 + len(name)), (14, 14 + len(encoded)), (19, 19 + len(encoded))]


@pytest.mark.parametrize("value", ["7", "42", "SXRlbTox", "qzx", "01HZY3K4Q8V7W6X5T4S3R2P1N0",
                                   "64b7f0c2e4a1d9b8c7f6e5d4", "3f2b8e4a-9c1d-4e6f-8a7b-0c9d8e7f6a5b"])
def test_every_id_shape_is_carried_from_a_created_object(value: str) -> None:
    c = detected([
        _json("/api/things", "POST", 201, orjson.dumps({"id": value}).decode()),
        make_request(f"/api/things/{value}"),
        _json("/graphql", "POST", 200, "{}", {"query": f'mutation {{ delete(id: "{value}") }}',
                                               "variables": {"thing": value}}),
    ])
    inside = [(0, 2, "body JSON query")] if len(value) >= 4 else []  # a short value only ever counts whole
    assert uses_of(c, value) == sorted([(0, 1, "path"), *inside, (0, 2, "body JSON variables.thing")])


def test_values_the_client_chose_are_not_correlated() -> None:
    c = detected([
        _json("/api/items?page=2&size=20", "GET", 200, '{"page": 2, "size": 20, "lang": "en", "items": []}'),
        _json("/api/items?page=2&size=20&lang=en", "GET", 200, '{"page": 2, "enabled": true}'),
        _json("/api/cart", "POST", 201, '{"id": 37, "quantity": 1}', {"quantity": 1}),
        _json("/api/cart/37", "PATCH", 200, '{"id": 37, "quantity": 1}', {"quantity": 1, "gift": True}),
        _json("/api/login", "POST", 200, '{"user": {"name": "dora.k"}}', {"username": "dora.k"}),
        make_request("/api/users/dora.k"),
    ])
    assert sorted(c) == ["37@2 id"]
    assert uses_of(c, "37") == [(2, 3, "path")]


FORM = "application/x-www-form-urlencoded"


def test_a_rotated_token_is_read_from_its_latest_source() -> None:
    page = '<input type="hidden" name="csrf_token" value="{}">'
    c = detected([
        answered(make_request("/form"), page.format("tok-aaaa-1111"), "text/html"),
        make_request("/form", "POST", body=b"csrf_token=tok-aaaa-1111", content_type=FORM),
        answered(make_request("/form"), page.format("tok-aaaa-1111"), "text/html"),
        make_request("/form", "POST", body=b"csrf_token=tok-aaaa-1111", content_type=FORM),
    ])
    assert uses_of(c, "tok-aaaa-1111") == [(0, 1, "body"), (2, 3, "body")]


def test_a_rejected_value_at_structural_places_is_reported_with_a_reason() -> None:
    analysis = analyse(make_session([
        _json("/api/items", "POST", 201, '{"count": 1}'),
        make_request("/api/items/1"),
    ]))
    assert analysis.correlations == []
    assert [(r.value, r.step, r.reason) for r in analysis.rejected] == [
        ("1", 1, "a short value under 'count', not a name that holds ids")]


def test_inspect_warns_about_a_rejected_value_and_says_why() -> None:
    session = make_session([_json("/api/items", "POST", 201, '{"count": 1}'), make_request("/api/items/1")])
    assert inspect_sessions([session]).warnings == [
        "session 'test session' step 2: 1 in the path matches step 1 JSON count but is sent as recorded:"
        " a short value under 'count', not a name that holds ids (add a rule?)"]
