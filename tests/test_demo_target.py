"""The demo target, as a real process on a free port, driven over HTTP."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import httpx
import pytest

from processes import target_log

pytestmark = pytest.mark.timeout(30)


def client(base_url: str) -> httpx.Client:
    # Redirects are part of what is under test, so they are never followed here.
    return httpx.Client(base_url=base_url, follow_redirects=False, timeout=10)


def login(c: httpx.Client, username: str = "alice") -> httpx.Response:
    return c.post("/login", data={"username": username, "password": "demo"})


def test_pages_answer(demo_target: str) -> None:
    with client(demo_target) as c:
        home = c.get("/")
        assert home.status_code == 200
        assert home.headers["content-type"].startswith("text/html")
        assert 'href="/items"' in home.text and 'href="/login"' in home.text

        first = c.get("/items")
        assert first.status_code == 200
        assert re.findall(r'href="/items/(\d+)"', first.text) == [str(i) for i in range(1, 11)]
        last = c.get("/items", params={"page": 5})
        assert re.findall(r'href="/items/(\d+)"', last.text) == [str(i) for i in range(41, 51)]
        found = c.get("/items", params={"q": "item 4"})  # Item 4 and Item 40..49
        assert len(re.findall(r'href="/items/\d+"', found.text)) == 10
        assert "11 items" in found.text

        detail = c.get("/items/7")
        assert detail.status_code == 200 and "<h1>Item 7</h1>" in detail.text
        missing = c.get("/items/999")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert c.get("/no/such/page").status_code == 404

        api = c.get("/api/items", params={"page": 2, "q": "item 4"}).json()
        assert api == {
            "items": [{"id": 49, "name": "Item 49", "price": api["items"][0]["price"], "category": "tools"}],
            "page": 2,
            "total": 11,
        }
        assert isinstance(api["items"][0]["price"], float)
        assert c.get("/api/items").json()["total"] == 50
        item = c.get("/api/items/7").json()
        assert item["id"] == 7 and item["name"] == "Item 7" and item["category"] == "garden"
        gone = c.get("/api/items/999")
        assert gone.status_code == 404 and "error" in gone.json()


def test_data_is_the_same_on_every_start(demo_target: str) -> None:
    items = httpx.get(f"{demo_target}/api/items", params={"page": 1}).json()["items"]
    assert [it["name"] for it in items] == [f"Item {i}" for i in range(1, 11)]
    assert items[0] == {"id": 1, "name": "Item 1", "price": 41.99, "category": "games"}


def test_login_sets_cookie_and_account_greets_the_user(demo_target: str) -> None:
    with client(demo_target) as c:
        assert c.get("/login").status_code == 200
        resp = login(c, "alice")
        assert resp.status_code == 302
        assert resp.headers["location"] == "/account"
        set_cookie = resp.headers["set-cookie"]
        assert re.match(r"sid=[\w-]{16,};", set_cookie)
        assert "HttpOnly" in set_cookie and "Path=/" in set_cookie

        account = c.get("/account")
        assert account.status_code == 200
        assert "Hello alice" in account.text

        out = c.post("/logout")
        assert out.status_code == 302 and out.headers["location"] == "/"
        assert "sid=;" in out.headers["set-cookie"] and "Expires=Thu, 01 Jan 1970" in out.headers["set-cookie"]
        assert "sid" not in c.cookies

    # The session is gone on the server too: replaying the old cookie gets nowhere.
    stale = httpx.get(f"{demo_target}/account", cookies={"sid": resp.cookies["sid"]})
    assert stale.status_code == 302 and stale.headers["location"] == "/login"


def test_wrong_password_gives_401_and_the_form(demo_target: str) -> None:
    with client(demo_target) as c:
        resp = c.post("/login", data={"username": "alice", "password": "nope"})
        assert resp.status_code == 401
        assert '<form method="post" action="/login">' in resp.text
        assert "set-cookie" not in resp.headers
        assert c.get("/account").status_code == 302


def test_cart_requires_login(demo_target: str) -> None:
    with client(demo_target) as c:
        assert c.get("/api/cart").status_code == 401
        anonymous = c.post("/api/cart", json={"item_id": 3, "qty": 1})
        assert anonymous.status_code == 401 and "error" in anonymous.json()
        assert c.get("/api/cart", headers={"cookie": "sid=forged"}).status_code == 401

        login(c, "bob")
        assert c.get("/api/cart").json() == {"cart": []}
        added = c.post("/api/cart", json={"item_id": 3, "qty": 2})
        assert added.status_code == 201
        assert [(line["id"], line["qty"]) for line in added.json()["cart"]] == [(3, 2)]
        c.post("/api/cart", json={"item_id": 3, "qty": 1})
        c.post("/api/cart", json={"item_id": 8, "qty": 1})
        assert [(line["id"], line["qty"]) for line in c.get("/api/cart").json()["cart"]] == [(3, 3), (8, 1)]

        for bad in (b"not json", b"[1, 2]", b'{"item_id": "3", "qty": 1}', b'{"item_id": true}', b'{"qty": 1}'):
            resp = c.post("/api/cart", content=bad, headers={"content-type": "application/json"})
            assert resp.status_code == 400, bad
            assert "error" in resp.json()
        assert c.post("/api/cart", json={"item_id": 999, "qty": 1}).status_code == 404

    # Another login has a cart of its own.
    with client(demo_target) as other:
        login(other, "bob")
        assert other.get("/api/cart").json() == {"cart": []}


def test_log_records_what_reached_the_target_exactly(demo_target: str) -> None:
    before = time.time()
    with client(demo_target) as c:
        c.get("/items?q=Item%204&page=2")
        c.get("/items/%37")  # an escape the router decodes; the log keeps it as sent
        c.post("/login", content=b"username=carol&password=demo",
               headers={"content-type": "application/x-www-form-urlencoded"})
        c.get("/account")
        c.post("/api/cart", content=b'{"item_id": 5, "qty": 1}', headers={"content-type": "application/json"})
        c.post("/api/cart", content=b"\xff\xfe", headers={"content-type": "application/json"})
        c.get("/nope")
        c.post("/logout")
    after = time.time()

    log = target_log(demo_target)
    assert [{k: v for k, v in r.items() if k != "t"} for r in log] == [
        {"method": "GET", "path": "/items?q=Item%204&page=2", "body": "", "user": None, "status": 200},
        {"method": "GET", "path": "/items/%37", "body": "", "user": None, "status": 200},
        {"method": "POST", "path": "/login", "body": "username=carol&password=demo", "user": None, "status": 302},
        {"method": "GET", "path": "/account", "body": "", "user": "carol", "status": 200},
        {"method": "POST", "path": "/api/cart", "body": '{"item_id": 5, "qty": 1}', "user": "carol", "status": 201},
        {"method": "POST", "path": "/api/cart", "body": "\ufffd\ufffd", "user": "carol", "status": 400},
        {"method": "GET", "path": "/nope", "body": "", "user": "carol", "status": 404},
        {"method": "POST", "path": "/logout", "body": "", "user": "carol", "status": 302},
    ]
    times = [r["t"] for r in log]
    assert all(isinstance(t, float) for t in times)
    assert before <= times[0] and times == sorted(times) and times[-1] <= after
    # Reading the log is not itself logged.
    assert len(target_log(demo_target)) == len(log)


def test_reset_clears_the_log(demo_target: str) -> None:
    httpx.get(f"{demo_target}/")
    httpx.get(f"{demo_target}/api/items")
    assert len(target_log(demo_target)) == 2
    resp = httpx.post(f"{demo_target}/__reset")
    assert resp.status_code == 204 and resp.content == b""
    assert target_log(demo_target) == []
    httpx.get(f"{demo_target}/items/1")
    assert [r["path"] for r in target_log(demo_target)] == ["/items/1"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_process_cleanly(
    demo_target_process: tuple[subprocess.Popen[str], str], sig: signal.Signals
) -> None:
    proc, base_url = demo_target_process
    assert httpx.get(f"{base_url}/").status_code == 200
    proc.send_signal(sig)
    assert proc.wait(10) == 0
    assert proc.stderr is not None and proc.stderr.read() == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/", timeout=2)


def test_log_entries_are_json_objects_with_the_documented_keys(demo_target: str) -> None:
    httpx.post(f"{demo_target}/login", data={"username": "d", "password": "x"})
    raw = httpx.get(f"{demo_target}/__log").content
    (entry,) = json.loads(raw)["requests"]
    assert list(entry) == ["method", "path", "body", "user", "status", "t"]
