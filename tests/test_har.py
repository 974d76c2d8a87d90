"""HAR to exchanges on a handwritten Firefox-style HAR: HAR 1.2 fields only, no underscore extras."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson
import pytest

from recorder.filters import FlowFilter
from recorder.har import group_id, load_har
from recorder.harentry import INVALID, NO_RESPONSE, NOT_HTTP, WEBSOCKET
from recorder.records import request_fields
from recorder.redaction import Redactor
from traffic_replay.errors import HarError

pytestmark = pytest.mark.timeout(10)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00binary\xff"


def entry(method: str, url: str, status: int, page: str = "page_1", started: str = "2026-01-02T10:00:00.000+01:00",
          time: float = 50.0, post: dict[str, object] | None = None, content: dict[str, object] | None = None,
          headers: list[dict[str, str]] | None = None, version: str = "HTTP/1.1") -> dict[str, object]:
    request: dict[str, object] = {
        "method": method, "url": url, "httpVersion": version, "cookies": [], "queryString": [],
        "headers": headers or [{"name": "Host", "value": "shop.example"}, {"name": "User-Agent", "value": FIREFOX}],
        "headersSize": -1, "bodySize": -1,
    }
    if post is not None:
        request["postData"] = post
    return {
        "pageref": page, "startedDateTime": started, "time": time, "request": request,
        "response": {"status": status, "statusText": "OK" if status == 200 else "", "httpVersion": version,
                     "cookies": [], "headers": [{"name": "Content-Type", "value": "text/html"}],
                     "content": content if content is not None else {"size": 5, "mimeType": "text/html",
                                                                      "text": "hello"},
                     "redirectURL": "", "headersSize": -1, "bodySize": -1},
        "cache": {}, "timings": {"blocked": 1, "dns": -1, "connect": -1, "send": 2, "wait": 40, "receive": 7,
                                 "ssl": -1},
    }


def firefox_har(tmp_path: Path) -> Path:
    entries = [
        entry("GET", "https://shop.example/", 200),
        entry("POST", "https://shop.example/login", 302, started="2026-01-02T10:00:01.000+01:00",
              post={"mimeType": "application/x-www-form-urlencoded",
                    "params": [{"name": "username", "value": "ada"}, {"name": "password", "value": "s3cret!"}]}),
        entry("GET", "https://shop.example/logo.png?v=2", 200, started="2026-01-02T10:00:01.500+01:00",
              content={"size": len(PNG), "mimeType": "image/png", "encoding": "base64",
                       "text": base64.b64encode(PNG).decode()}),
        entry("POST", "https://shop.example:8443/api/cart", 201, page="page_2", started="2026-01-02T10:00:05.000+01:00",
              post={"mimeType": "application/json", "text": '{"item_id": 3, "token": "tok-123"}'},
              headers=[{"name": ":authority", "value": "shop.example:8443"},
                       {"name": "Authorization", "value": "Bearer abc.def"}], version="h2"),
        entry("GET", "data:image/gif;base64,R0lGODlhAQABAAAAACw=", 200),
        entry("GET", "https://shop.example/ads.js", 0, content={"size": 0, "mimeType": "x-unknown"}),
        entry("GET", "wss://shop.example/live", 101),
        {"request": {"url": "https://shop.example/broken"}, "response": {"status": 200}},
    ]
    har = {"log": {"version": "1.2", "creator": {"name": "Firefox", "version": "128.0"},
                   "pages": [{"startedDateTime": "2026-01-02T10:00:00.000+01:00", "id": "page_1", "title": "Shop",
                              "pageTimings": {}},
                             {"startedDateTime": "2026-01-02T10:00:05.000+01:00", "id": "page_2", "title": "Cart",
                              "pageTimings": {}}],
                   "entries": entries}}
    path = tmp_path / "firefox.har"
    path.write_bytes(orjson.dumps(har))
    return path


def test_a_firefox_har_becomes_exchanges_and_reasons(tmp_path: Path) -> None:
    har = load_har(firefox_har(tmp_path), body_cap=1024, per="page")
    assert har.entries == 8
    assert [reason for _, _, reason in har.skipped] == [NOT_HTTP, NO_RESPONSE, NOT_HTTP, INVALID]
    shop, cart = har.groups
    assert (shop.title, cart.title) == ("Shop", "Cart")
    home, login, logo = shop.exchanges
    # Timing from startedDateTime and time; the request ends after blocked+send, the response after wait+receive.
    assert home.started == 1767344400.0 and home.finished == pytest.approx(home.started + 0.05)
    assert home.request_end == pytest.approx(home.started + 0.003) and home.response.duration_ms == 47.0
    assert login.started - home.started == pytest.approx(1.0)
    # Firefox gave only the form's fields: they become the body.
    assert login.body is not None and login.body.to_bytes() == b"username=ada&password=s3cret%21"
    assert logo.response.body is not None and logo.response.body.to_bytes() == PNG
    assert (logo.path, logo.port, logo.scheme) == ("/logo.png?v=2", 443, "https")
    (api,) = cart.exchanges
    assert (api.host, api.port, api.http_version) == ("shop.example", 8443, "HTTP/2.0")
    assert [name for name, _ in api.headers] == ["Authorization"]  # pseudo-headers dropped
    assert api.body is not None and api.body.to_bytes() == b'{"item_id": 3, "token": "tok-123"}'


def test_per_file_is_one_group_and_ids_are_stable(tmp_path: Path) -> None:
    path = firefox_har(tmp_path)
    first, again = load_har(path, 1024, "file"), load_har(path, 1024, "file")
    assert len(first.groups) == 1 and len(first.groups[0].exchanges) == 4
    assert first.groups[0].id == again.groups[0].id  # importing twice rewrites the same file
    assert first.groups[0].title == "firefox"


def test_the_recorder_s_filter_and_redaction_apply(tmp_path: Path) -> None:
    har = load_har(firefox_har(tmp_path), 1024, "file", FlowFilter(exclude=[r"/login"], static=False),
                   Redactor(b"k" * 32))
    reasons = [reason for _, _, reason in har.skipped]
    assert reasons.count("excluded") == 1 and reasons.count("static") == 1
    text = orjson.dumps([request_fields(x) for g in har.groups for x in g.exchanges]).decode()
    assert "abc.def" not in text and "tok-123" not in text and "Bearer «redacted:" in text


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not valid JSON"), (b"GET / HTTP/1.1", "not valid JSON"), (b'{"log": {}}', "no log.entries list"),
    (b"[1, 2]", "no log.entries list"),
])
def test_a_file_that_is_not_a_har_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.har"
    path.write_bytes(content)
    with pytest.raises(HarError, match=message) as info:
        load_har(path, 1024)
    assert str(info.value).startswith(f"{path}: not a HAR file") and "\n" not in str(info.value)


def test_a_missing_har_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(HarError, match=r"missing\.har: no such file$"):
        load_har(tmp_path / "missing.har", 1024)


def test_websocket_upgrade_in_http_scheme_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ws.har"
    path.write_bytes(orjson.dumps({"log": {"entries": [entry("GET", "https://shop.example/socket", 101)]}}))
    assert [reason for _, _, reason in load_har(path, 1024).skipped] == [WEBSOCKET]


def test_a_har_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.har"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps({"log": {"entries": [entry("GET", "https://shop.example/", 200)]}}))
    assert [len(g.exchanges) for g in load_har(path, 1024).groups] == [1]


def test_pages_after_the_entries_still_name_the_groups(tmp_path: Path) -> None:
    first = firefox_har(tmp_path)
    document = orjson.loads(first.read_bytes())
    log = document["log"]
    path = tmp_path / "pages-last.har"
    path.write_bytes(orjson.dumps({"log": {"entries": log["entries"], "pages": log["pages"]}}))
    assert [g.title for g in load_har(path, 1024, "page").groups] == ["Shop", "Cart"]


def test_invalid_json_after_some_entries_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.har"
    path.write_bytes(orjson.dumps({"log": {"entries": [entry("GET", "https://shop.example/", 200)] * 3}})[:-40])
    with pytest.raises(HarError, match="not valid JSON") as info:
        load_har(path, 1024, "file")
    assert "\n" not in str(info.value)


def test_the_stable_id_is_of_the_file_s_bytes(tmp_path: Path) -> None:
    path = firefox_har(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (group,) = load_har(path, 1024, "file").groups
    assert group.id == group_id(digest, "", group.exchanges[0].started)
