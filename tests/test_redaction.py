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


# --- values shaped like credentials, wherever they are (issue 12) -----------------------------------------

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEiLCJleHAiOjE5MDAwMDAwMDB9"
       ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
AWS = "AKIAIOSFODNN7EXAMPLE"


def _quoted(placeholder: str) -> str:
    return placeholder.replace("«", "%C2%AB").replace("»", "%C2%BB")


def test_a_jwt_in_a_page_a_url_path_and_a_header_gets_one_placeholder(redactor: Redactor) -> None:
    p = redactor.placeholder(JWT)
    page = (f'<html><script>window.token = "{JWT}";</script><a href="/verify/{JWT}">verify</a>'
            f'<p>contact: ops@example.com, docs at https://example.com/</p></html>').encode()
    assert redactor.body(page, "text/html; charset=utf-8") == page.replace(JWT.encode(), p.encode())
    assert redactor.path(f"/verify/{JWT}?next=/home") == f"/verify/{_quoted(p)}?next=/home"
    assert redactor.header_list([("Authorization", f"Bearer {JWT}"), ("X-Debug-Token", JWT),
                                 ("Referer", f"https://shop.example/verify/{JWT}")]) == [
        ("Authorization", f"Bearer {p}"), ("X-Debug-Token", p), ("Referer", f"https://shop.example/verify/{_quoted(p)}")]
    # Caught by its name or by its look: the same placeholder, which correlation pairs up.
    named = orjson.loads(redactor.body(orjson.dumps({"access_token": JWT, "other": JWT}), "application/json"))
    assert named == {"access_token": p, "other": p}
    form = redactor.body(f"grant=x&assertion={JWT}".encode(), "application/x-www-form-urlencoded")
    assert form == f"grant=x&assertion={_quoted(p)}".encode()


def test_a_password_in_a_location_or_a_page_is_redacted(redactor: Redactor) -> None:
    p = redactor.placeholder("s3cr!t")
    assert redactor.header_list([("Location", "https://ada:s3cr%21t@db.example/x?page=2")]) == [
        ("Location", f"https://ada:{_quoted(p)}@db.example/x?page=2")]
    assert redactor.body(b'<a href="ftp://ada:s3cr%21t@files.example/">', "text/html") == (
        f'<a href="ftp://ada:{p}@files.example/">'.encode())


def _multipart(boundary: str, *parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for head, value, ctype in parts:
        out += f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n".encode()
        out += f"Content-Type: {ctype}\r\n".encode() if ctype else b""
        out += b"\r\n" + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_parts_by_name_and_by_look(redactor: Redactor) -> None:
    boundary = "----WebKitFormBoundaryAbC123xYz"
    png = b"\x89PNG\r\n\x1a\n" + AWS.encode() + b"\xff\x00"  # an upload that happens to hold the shape: kept
    body = _multipart(boundary, ('name="username"', b"ada", None), ('name="password"', b"hunter2", None),
                      ('name="API-Key"', b"k-9f2", None), ('name="note"', f"deploy with {STRIPE}".encode(), None),
                      ('name="avatar"; filename="a.png"', png, "image/png"),
                      ('name="pin"', b"0000", "text/plain"))
    out = redactor.body(body, f'multipart/form-data; boundary="{boundary}"')
    p = redactor.placeholder
    assert out == _multipart(boundary, ('name="username"', b"ada", None),
                             ('name="password"', p("hunter2").encode(), None),
                             ('name="API-Key"', p("k-9f2").encode(), None),
                             ('name="note"', f"deploy with {p(STRIPE)}".encode(), None),
                             ('name="avatar"; filename="a.png"', png, "image/png"),
                             ('name="pin"', p("0000").encode(), "text/plain"))
    # The same password as a form field: the same placeholder.
    form = redactor.body(b"password=hunter2", "application/x-www-form-urlencoded")
    assert form == f"password={_quoted(p('hunter2'))}".encode()
    untouched = _multipart(boundary, ('name="q"', b"shoes", None))
    assert redactor.body(untouched, f"multipart/form-data; boundary={boundary}") is untouched
    # A body that is not the multipart it says is still searched whole.
    odd = f"token-less {STRIPE}".encode()
    assert redactor.body(odd, "multipart/form-data; boundary=nowhere") == f"token-less {p(STRIPE)}".encode()


def test_binary_bodies_are_not_searched(redactor: Redactor) -> None:
    for ctype in ("image/png", "application/octet-stream", "font/woff2", "application/zip"):
        body = b"\x00\x01" + AWS.encode()
        assert redactor.body(body, ctype) is body
