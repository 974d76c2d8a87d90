"""Values that must not be correlated, next to one that must, from a real recording (issue 9).

A detector that accepts short and digit-free values (so that id ``1`` and ``untitled.txt``
are carried over) must still leave alone what the client chose or what never changes:
page numbers and sizes, a typed username echoed back, constants, a quantity the client
typed. Recorded through ``replay record --mode reverse:…`` in front of a fresh
``shapes_target``, judged by ``replay inspect --json``. The cart id beside them must be
correlated, so that the matrix cannot pass by correlating nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from traffic_replay.redacted import PLACEHOLDER

from processes import REPO_ROOT, interrupt, start_process, start_recorder, stop_process

pytestmark = pytest.mark.timeout(90)

USERNAME = "ada1815"  # a digit in it: dynamic-looking to any detector, yet the client's own
BROWSE = "negatives-browse/1.0"  # page and size, login, typed username, constants, cart after user id 1
CART = "negatives-cart/1.0"  # a cart without a login: no answer holds 1 before the client types it


def _browse_and_buy(client: httpx.Client) -> None:
    page = client.get("/api/items", params={"page": 2, "size": 20})
    assert page.json()["page"] == 2 and page.json()["size"] == 20
    login = client.post("/api/login", json={"username": USERNAME})
    assert login.json()["user"] == {"id": 1, "name": USERNAME}  # a fresh target: the first user is 1
    client.headers["Authorization"] = f"Bearer {login.json()['token']}"
    profile = client.get(f"/api/users/{USERNAME}").json()
    assert profile == {"name": USERNAME, "lang": "en", "active": True}
    client.get("/api/items", params={"page": 3, "size": 20, "lang": "en", "active": "true"}).raise_for_status()
    _cart(client, 17)


def _cart(client: httpx.Client, expected_id: int) -> None:
    line = client.post("/api/cart", json={"quantity": 1})
    assert line.status_code == 201 and line.json() == {"id": expected_id, "quantity": 1}
    assert client.patch(f"/api/cart/{expected_id}", json={"quantity": 1}).status_code == 200
    assert client.get(f"/api/cart/{expected_id}").status_code == 200


@pytest.fixture(scope="module")
def correlations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
    """{User-Agent: {value: correlation}} as ``replay inspect --json`` lists them."""
    out = tmp_path_factory.mktemp("negatives") / "recorded"
    target, match = start_process([sys.executable, str(REPO_ROOT / "tests" / "shapes_target.py"), "--port", "0"],
                                  r"listening on (http://\S+)", timeout=10)
    try:
        recorder, port = start_recorder(out, "--mode", f"reverse:{match.group(1)}", "--no-live")
        try:
            for agent, journey in ((BROWSE, _browse_and_buy), (CART, lambda c: _cart(c, 18))):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                                  headers={"User-Agent": agent}) as client:
                    journey(client)
            interrupt(recorder)
        finally:
            stop_process(recorder)
    finally:
        stop_process(target)
    inspected = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "inspect", str(out), "--json"],
                               capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert inspected.returncode == 0, inspected.stderr
    report = orjson.loads(inspected.stdout)
    names = {s["name"]: s["name"].split(" from ")[0] for s in report["sessions"]}
    assert sorted(names.values()) == sorted([BROWSE, CART])
    found: dict[str, dict[str, dict[str, Any]]] = {agent: {} for agent in names.values()}
    for c in report["correlations"]:
        found[names[c["session"]]][c["value"]] = c
    yield found


@pytest.mark.parametrize(("session", "value"), [
    pytest.param(BROWSE, "2", id="page number the client chose"),
    pytest.param(BROWSE, "20", id="page size the client chose"),
    pytest.param(BROWSE, "3", id="next page the client computed"),
    pytest.param(BROWSE, USERNAME, id="username typed at login, echoed, then in a path"),
    pytest.param(BROWSE, "en", id="constant lang en"),
    pytest.param(BROWSE, "true", id="constant true"),
    pytest.param(CART, "1", id="quantity 1 the client typed"),
    pytest.param(BROWSE, "1", id="quantity 1 typed after the login answered user id 1"),
])
def test_a_value_the_client_chose_or_a_constant_is_not_correlated(
        correlations: dict[str, dict[str, dict[str, Any]]], session: str, value: str) -> None:
    assert value not in correlations[session], correlations[session][value]


@pytest.mark.parametrize(("session", "cart_id", "steps"), [
    pytest.param(BROWSE, "17", (5, 6, 7), id="cart id after a login"),
    pytest.param(CART, "18", (1, 2, 3), id="cart id without a login"),
])
def test_the_cart_id_beside_them_is_correlated(correlations: dict[str, dict[str, dict[str, Any]]], session: str,
                                               cart_id: str, steps: tuple[int, int, int]) -> None:
    created, patched, fetched = steps  # as inspect numbers them, from 1
    correlation = correlations[session].get(cart_id)
    assert correlation is not None, f"the cart id {cart_id} is not correlated: {sorted(correlations[session])}"
    assert correlation["sources"][0] in (f"step {created} JSON id", f"step {created} header Location")
    assert correlation["uses"] == [f"step {patched} path", f"step {fetched} path"]


def test_nothing_else_is_correlated(correlations: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Only the bearer token (a redaction placeholder) and the cart ids: the matrix has no blind spot."""
    assert sorted(correlations[CART]) == ["18"]
    others = sorted(v for v in correlations[BROWSE] if v != "17")
    assert len(others) == 1 and PLACEHOLDER.fullmatch(others[0]), sorted(correlations[BROWSE])
    token = correlations[BROWSE][others[0]]
    assert (token["sources"], token["uses"]) == (["step 2 JSON token"],
                                                 [f"step {n} header Authorization" for n in range(3, 8)])
