"""Write the generated recording once (it is committed; rerunning it rewrites the same bytes).

    .venv/bin/python tests/data/equivalence/make_generated.py

Three sessions of 100 requests from benchmarks/scale.py (a login handing out a bearer token,
catalogue pages, items opened by id, cart lines created by POST and read back), and one small
session of a fresh database: ids 1, 2 and 10, the same small numbers as item, cart line and page.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).resolve().parent / "generated"
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import write_recording  # noqa: E402

from traffic_replay.format import Body, Request, Response, Session, write_session  # noqa: E402

JSON = "application/json"


def _fresh_database() -> Session:
    clock = 0.0
    requests: list[Request] = []

    def add(method: str, path: str, status: int, answer: object, sent: object | None = None) -> None:
        nonlocal clock
        headers = [("Host", "127.0.0.1:8000"), ("Accept", JSON)]
        if len(requests) > 0:
            headers.append(("Authorization", "Bearer tok-fresh-0001"))
        if sent is not None:
            headers.append(("Content-Type", JSON))
        data = orjson.dumps(answer)
        requests.append(Request(
            offset_ms=clock, duration_ms=5.0, method=method, scheme="http", host="127.0.0.1", port=8000, path=path,
            headers=headers, body=Body.from_bytes(orjson.dumps(sent), JSON) if sent is not None else None,
            response=Response(status=status, reason="OK", duration_ms=4.0, headers=[("Content-Type", JSON)],
                              body=Body.from_bytes(data, JSON))))
        clock += 100.0

    add("POST", "/api/login", 200, {"access_token": "tok-fresh-0001", "user": {"id": 1}},
        {"username": "first", "password": "«redacted:0a1b2c3d»"})
    add("GET", "/api/items?page=1&size=10", 200,
        {"items": [{"id": 1, "name": "One"}, {"id": 2, "name": "Two"}, {"id": 10, "name": "Ten"}], "page": 1})
    add("GET", "/api/items/1", 200, {"id": 1, "name": "One", "stock": 2})
    add("POST", "/api/cart", 201, {"id": 1, "lines": []}, {"owner": 1})
    add("POST", "/api/cart/1/lines", 201, {"id": 2, "item_id": 10, "quantity": 1}, {"item_id": 10, "quantity": 1})
    add("GET", "/api/cart/1/lines/2", 200, {"id": 2, "item_id": 10, "quantity": 1})
    add("GET", "/api/items/10", 200, {"id": 10, "name": "Ten", "stock": 1})
    add("GET", "/api/items/2", 200, {"id": 2, "name": "Two", "stock": 1})
    add("PUT", "/api/cart/1/lines/2", 200, {"id": 2, "item_id": 10, "quantity": 2}, {"quantity": 2})
    add("GET", "/api/items?page=2&size=10", 200, {"items": [{"id": 11, "name": "Eleven"}], "page": 2})
    return Session(id="fresh-db", name="fresh database", weight=2.0,
                   started_at=datetime(2026, 1, 1, 9, 0, tzinfo=UTC), requests=requests)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    write_recording(OUT, 300, 100)
    write_session(_fresh_database(), OUT)


if __name__ == "__main__":
    main()
