"""Redaction (pure): headers, JSON at any depth, form and multipart fields, query parameters, and values
shaped like credentials wherever they are (the shapes themselves: test_patterns.py; keys: test_keys.py)."""

from __future__ import annotations

import orjson
import pytest

from recorder.redaction import PLACEHOLDER, Redactor

pytestmark = pytest.mark.timeout(10)

KEY = b"k" * 32


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(KEY, headers=["X-Session-Token"], fields=["pin"])


def test_placeholders_are_stable_keyed_and_never_the_value(redactor: Redactor) -> None:
    p = redactor.placeholder("hunter2")
    assert PLACEHOLDER.fullmatch(p) and "hunter2" not in p
    assert redactor.placeholder("hunter2") == p  # equal secrets stay equal
    assert redactor.placeholder("hunter3") != p
    assert Redactor(b"another key").placeholder("hunter2") != p  # keyed: not a plain hash of the value
    assert redactor.placeholder(p) == p  # redacting twice changes nothing


def test_headers(redactor: Redactor) -> None:
    p = redactor.placeholder
    headers = [("Host", "shop"), ("Authorization", "Bearer tok-1"), ("Proxy-Authorization", "Basic dXNlcjpwdw=="),
               ("Cookie", "sid=abc; theme=dark"), ("X-Api-Key", "k-9"), ("X-Session-Token", "s-1"),
               ("Accept", "text/html")]
    assert redactor.header_list(headers) == [
        ("Host", "shop"), ("Authorization", f"Bearer {p('tok-1')}"),
        ("Proxy-Authorization", f"Basic {p('dXNlcjpwdw==')}"),
        ("Cookie", f"sid={p('abc')}; theme={p('dark')}"), ("X-Api-Key", p("k-9")), ("X-Session-Token", p("s-1")),
        ("Accept", "text/html")]
    response = [("Set-Cookie", "sid=abc; Path=/; HttpOnly"), ("Location", "/cb?code=1&access_token=tok-1&x=2")]
    assert redactor.header_list(response) == [
        ("Set-Cookie", f"sid={p('abc')}; Path=/; HttpOnly"),
        ("Location", f"/cb?code=1&access_token={p('tok-1').replace('«', '%C2%AB').replace('»', '%C2%BB')}&x=2")]
    untouched = [("Accept", "*/*")]
    assert redactor.header_list(untouched) is untouched  # nothing to do costs no copy


def test_json_fields_at_any_depth_keep_everything_else(redactor: Redactor) -> None:
    body = orjson.dumps({"user": "ada", "password": "pw1", "pin": 1234, "remember": True,
                         "profile": {"apiKey": "k-1", "nested": [{"Access-Token": "tok-1"}, {"name": "x"}]},
                         "secret": {"a": "s1", "b": ["s2", 3], "c": None}, "token": None})
    out = orjson.loads(redactor.body(body, "application/json; charset=utf-8"))
    p = redactor.placeholder
    assert out == {"user": "ada", "password": p("pw1"), "pin": p("1234"), "remember": True,
                   "profile": {"apiKey": p("k-1"), "nested": [{"Access-Token": p("tok-1")}, {"name": "x"}]},
                   "secret": {"a": p("s1"), "b": [p("s2"), p("3")], "c": None}, "token": None}


def test_the_same_secret_gets_the_same_placeholder_everywhere(redactor: Redactor) -> None:
    p = redactor.placeholder("tok 1/2")
    issued = orjson.loads(redactor.body(b'{"access_token": "tok 1/2"}', "application/json"))["access_token"]
    header = redactor.header("authorization", "Bearer tok 1/2")
    query = redactor.path("/me?access_token=tok+1%2F2")
    assert issued == p and header == f"Bearer {p}"
    assert query == "/me?access_token=" + p.replace("«", "%C2%AB").replace("»", "%C2%BB")


def test_form_bodies_and_queries(redactor: Redactor) -> None:
    p = redactor.placeholder("demo").replace("«", "%C2%AB").replace("»", "%C2%BB")
    form = b"username=ada&password=demo&next=%2Faccount"
    expected = f"username=ada&password={p}&next=%2Faccount".encode()
    assert redactor.body(form, "application/x-www-form-urlencoded") == expected
    assert redactor.path("/login?passwd=demo&page=2#top") == f"/login?passwd={p}&page=2#top"
    assert redactor.path("/items?page=2") == "/items?page=2"


def test_bodies_without_sensitive_fields_are_returned_as_they_are(redactor: Redactor) -> None:
    for body, ctype in [(b'{"items": [1, 2]}', "application/json"), (b"<input name=password>", "text/html"),
                        (b'{"password": ', "application/json"), (b"\xff\xfe", "application/x-www-form-urlencoded"),
                        (b'{"password": "x"}', None)]:
        assert redactor.body(body, ctype) is body
