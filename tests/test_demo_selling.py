"""The demo target's sell area: it works with live values and fails when replayed verbatim."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest

from traffic_replay.demo.selling import FIRST_LISTING_ID, RECENT_TOKENS, SellingState
from traffic_replay.demo.target import create_app

from processes import target_log

pytestmark = pytest.mark.timeout(30)

FORM_TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def client(base_url: str) -> httpx.Client:
    # Redirects are part of what is under test, so they are never followed here.
    return httpx.Client(base_url=base_url, follow_redirects=False, timeout=10, trust_env=False)


def form_token(c: httpx.Client) -> str:
    page = c.get("/signin")
    assert page.status_code == 200
    match = FORM_TOKEN.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def signin(c: httpx.Client, username: str = "alice") -> None:
    resp = c.post("/signin", data={"username": username, "password": "demo", "csrf_token": form_token(c)})
    assert resp.status_code == 302 and resp.headers["location"] == "/sell"


def page_token(c: httpx.Client) -> str:
    page = c.get("/sell")
    assert page.status_code == 200
    match = META_TOKEN.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def create_listing(c: httpx.Client, name: str = "Bike", price: float = 120.5) -> int:
    resp = c.post("/api/listings", json={"name": name, "price": price}, headers={"X-CSRF-Token": page_token(c)})
    assert resp.status_code == 201, resp.text
    listing_id: int = resp.json()["listing"]["id"]
    return listing_id


@dataclass
class Recorded:
    """The server-issued values one user's journey saw, as a recording would hold them."""

    form_token: str
    page_token: str
    listing_id: int
    bearer: str


def journey(c: httpx.Client, username: str = "alice") -> Recorded:
    """The whole sell flow with live values, checking every answer on the way."""
    page = c.get("/signin")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.match(r"pre=[\w-]{16,};", page.headers["set-cookie"])
    assert "HttpOnly" in page.headers["set-cookie"] and "Path=/" in page.headers["set-cookie"]
    match = FORM_TOKEN.search(page.text)
    assert match is not None
    form = match.group(1)

    signed_in = c.post("/signin", data={"username": username, "password": "demo", "csrf_token": form})
    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/sell"
    assert re.match(r"sid=[\w-]{16,};", signed_in.headers["set-cookie"])

    sell = c.get("/sell")
    assert sell.status_code == 200 and "<title>Sell an item</title>" in sell.text
    match = META_TOKEN.search(sell.text)
    assert match is not None
    meta = match.group(1)

    created = c.post("/api/listings", json={"name": "Bike", "price": 120.5}, headers={"X-CSRF-Token": meta})
    assert created.status_code == 201
    listing = created.json()["listing"]
    assert created.json() == {"listing": {"id": listing["id"], "name": "Bike", "price": 120.5, "owner": username}}
    assert isinstance(listing["id"], int) and listing["id"] >= FIRST_LISTING_ID
    assert created.headers["location"] == f"/listings/{listing['id']}"

    assert c.get(f"/api/listings/{listing['id']}").json() == {"listing": listing}
    html = c.get(created.headers["location"])
    assert html.status_code == 200 and "<h1>Bike</h1>" in html.text and username in html.text

    issued = c.post("/api/token")
    assert issued.status_code == 200
    auth = issued.json()["auth"]
    assert issued.json() == {"auth": {"access_token": auth["access_token"], "token_type": "Bearer"}}
    assert re.fullmatch(r"[0-9a-f]{32}", auth["access_token"])

    me = c.get("/api/me", headers={"Authorization": f"Bearer {auth['access_token']}"})
    assert me.status_code == 200 and me.json() == {"user": username}
    return Recorded(form, meta, listing["id"], auth["access_token"])


def test_the_journey_works_with_live_values_and_is_logged(demo_target: str) -> None:
    with client(demo_target) as c:
        rec = journey(c, "alice")
    assert rec.listing_id == FIRST_LISTING_ID
    log = [(r["method"], r["path"], r["user"], r["status"]) for r in target_log(demo_target)]
    assert log == [
        ("GET", "/signin", None, 200),
        ("POST", "/signin", None, 302),
        ("GET", "/sell", "alice", 200),
        ("POST", "/api/listings", "alice", 201),
        ("GET", f"/api/listings/{rec.listing_id}", "alice", 200),
        ("GET", f"/listings/{rec.listing_id}", "alice", 200),
        ("POST", "/api/token", "alice", 200),
        ("GET", "/api/me", "alice", 200),
    ]


def test_replaying_the_recorded_values_from_another_client_fails_at_each_step(demo_target: str) -> None:
    with client(demo_target) as recorder:
        rec = journey(recorder, "alice")

    with client(demo_target) as replay:
        # A verbatim replay keeps its own cookies (the replayer's jar) but sends the
        # recorded values: a spent token from another pre cookie.
        replay.get("/signin")
        stale = replay.post("/signin", data={"username": "alice", "password": "demo", "csrf_token": rec.form_token})
        assert stale.status_code == 403 and stale.headers["content-type"].startswith("text/html")
        assert "sid" not in replay.cookies

        # Signed in live, so that each later step fails on its recorded value alone.
        signin(replay, "alice")
        page_token(replay)  # this login has valid page tokens, just not the recorded one
        recorded_csrf = {"X-CSRF-Token": rec.page_token}
        foreign = replay.post("/api/listings", json={"name": "Bike", "price": 1}, headers=recorded_csrf)
        assert foreign.status_code == 403 and "error" in foreign.json()

        theirs = replay.get(f"/api/listings/{rec.listing_id}")
        assert theirs.status_code == 404 and "error" in theirs.json()
        assert replay.get(f"/listings/{rec.listing_id}").status_code == 404

        borrowed = replay.get("/api/me", headers={"Authorization": f"Bearer {rec.bearer}"})
        assert borrowed.status_code == 401 and "error" in borrowed.json()
        assert replay.get("/api/me").status_code == 401

    log = target_log(demo_target)
    # The rejected replay created nothing: the recorder's listing is the only one.
    assert [r["status"] for r in log if r["method"] == "POST" and r["path"] == "/api/listings"] == [201, 403]


def test_form_tokens_are_single_use_and_bound_to_the_pre_cookie(demo_target: str) -> None:
    with client(demo_target) as c, client(demo_target) as other:
        token = form_token(c)
        # The right token from the wrong pre cookie, and no token at all.
        assert other.post("/signin", data={"username": "a", "password": "demo", "csrf_token": token}).status_code == 403
        assert c.post("/signin", data={"username": "a", "password": "demo"}).status_code == 403
        no_pre = httpx.post(
            f"{demo_target}/signin", data={"username": "a", "password": "demo", "csrf_token": token}, trust_env=False
        )
        assert no_pre.status_code == 403

        assert c.post("/signin", data={"username": "a", "password": "demo", "csrf_token": token}).status_code == 302
        again = c.post("/signin", data={"username": "a", "password": "demo", "csrf_token": token})
        assert again.status_code == 403 and 'href="/signin"' in again.text

        # A forged pre cookie is replaced by one the server issued.
        forged = httpx.get(f"{demo_target}/signin", cookies={"pre": "forged"}, trust_env=False)
        assert "pre=forged" not in forged.headers["set-cookie"]


def test_wrong_password_spends_the_token_and_offers_a_fresh_form(demo_target: str) -> None:
    with client(demo_target) as c:
        token = form_token(c)
        wrong = c.post("/signin", data={"username": "alice", "password": "nope", "csrf_token": token})
        assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
        assert "sid" not in c.cookies
        match = FORM_TOKEN.search(wrong.text)
        assert match is not None and match.group(1) != token
        assert c.post("/signin", data={"username": "alice", "password": "demo", "csrf_token": token}).status_code == 403
        ok = c.post("/signin", data={"username": "alice", "password": "demo", "csrf_token": match.group(1)})
        assert ok.status_code == 302


def test_everything_needs_a_login(demo_target: str) -> None:
    with client(demo_target) as c:
        sell = c.get("/sell")
        assert sell.status_code == 302 and sell.headers["location"] == "/signin"
        anonymous = c.post("/api/listings", json={"name": "x", "price": 1}, headers={"X-CSRF-Token": "x"})
        assert anonymous.status_code == 401 and "error" in anonymous.json()
        assert c.post("/api/token").status_code == 401
        assert c.get("/api/me", headers={"Authorization": "Bearer " + "0" * 32}).status_code == 401
        assert c.get(f"/api/listings/{FIRST_LISTING_ID}").status_code == 404
        assert c.get(f"/listings/{FIRST_LISTING_ID}").status_code == 404


def test_page_tokens_recent_renders_are_valid_and_the_header_is_required(demo_target: str) -> None:
    with client(demo_target) as c:
        signin(c)
        tokens = [page_token(c) for _ in range(RECENT_TOKENS + 1)]
        assert len(set(tokens)) == len(tokens)
        body = {"name": "Lamp", "price": 3}
        assert c.post("/api/listings", json=body).status_code == 403
        assert c.post("/api/listings", json=body, headers={"X-CSRF-Token": tokens[0]}).status_code == 403  # lapsed
        for token in (tokens[1], tokens[-1], tokens[-1]):  # recent ones, and reusable
            assert c.post("/api/listings", json=body, headers={"X-CSRF-Token": token}).status_code == 201

        headers = {"X-CSRF-Token": tokens[-1], "content-type": "application/json"}
        for bad in (b"nope", b"[]", b'{"name": "x"}', b'{"name": "", "price": 1}', b'{"name": "x", "price": true}',
                    b'{"name": "x", "price": "1"}', b'{"name": "x", "price": -1}', b'{"name": 5, "price": 1}'):
            resp = c.post("/api/listings", content=bad, headers=headers)
            assert resp.status_code == 400 and "error" in resp.json(), bad


def test_two_logins_get_their_own_ids_and_cannot_see_each_other(demo_target: str) -> None:
    # The same recorded username for both, as when many virtual users replay one recording.
    with client(demo_target) as one, client(demo_target) as two:
        signin(one, "alice")
        signin(two, "alice")
        ids = [create_listing(one), create_listing(two), create_listing(one)]
        assert ids == [FIRST_LISTING_ID, FIRST_LISTING_ID + 1, FIRST_LISTING_ID + 2]
        for mine, other, theirs in ((one, two, ids[0]), (two, one, ids[1])):
            assert mine.get(f"/api/listings/{theirs}").status_code == 200
            assert other.get(f"/api/listings/{theirs}").status_code == 404
            assert other.get(f"/listings/{theirs}").status_code == 404
        assert one.get("/api/listings/999999").status_code == 404


def test_bearer_token_works_without_a_cookie_and_dies_with_its_login(demo_target: str) -> None:
    with client(demo_target) as c:
        signin(c, "carol")
        bearer = c.post("/api/token").json()["auth"]["access_token"]
        auth = {"Authorization": f"Bearer {bearer}"}
        plain = httpx.get(f"{demo_target}/api/me", headers=auth, trust_env=False)
        assert plain.status_code == 200 and plain.json() == {"user": "carol"}
        assert httpx.get(f"{demo_target}/api/me", headers={"Authorization": bearer}, trust_env=False).status_code == 401
        c.post("/logout")
        assert httpx.get(f"{demo_target}/api/me", headers=auth, trust_env=False).status_code == 401
    # The cookie-less call is logged under the bearer's user.
    assert [r["user"] for r in target_log(demo_target) if r["path"] == "/api/me"] == ["carol", None, None]


def test_tables_stay_bounded() -> None:
    app = create_app()
    sell = app.extensions["demo_selling"]
    assert isinstance(sell, SellingState)
    sell.cap = 3
    c = app.test_client()
    for _ in range(10):
        c.delete_cookie("pre")
        c.delete_cookie("sid")
        page = c.get("/signin").get_data(as_text=True)
        match = FORM_TOKEN.search(page)
        assert match is not None
        resp = c.post("/signin", data={"username": "u", "password": "demo", "csrf_token": match.group(1)})
        assert resp.status_code == 302
        meta = META_TOKEN.search(c.get("/sell").get_data(as_text=True))
        assert meta is not None
        created = c.post("/api/listings", json={"name": "x", "price": 1}, headers={"X-CSRF-Token": meta.group(1)})
        assert created.status_code == 201
        assert c.post("/api/token").status_code == 200
    assert max(len(sell.form_tokens), len(sell.page_tokens), len(sell.listings), len(sell.bearers)) == 3
    # The oldest listings went; ids keep counting.
    assert list(sell.listings) == [FIRST_LISTING_ID + 7, FIRST_LISTING_ID + 8, FIRST_LISTING_ID + 9]
