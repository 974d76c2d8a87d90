"""A big generated HAR of JSON API calls, as a browser exports it: for the import benchmark (issue 10).

    .venv/bin/python benchmarks/big_har.py --entries 1000000 --pages 1000 -o /tmp/big.har [--pages-last]

Entries are Chrome-style HAR 1.2 entries of one user's API traffic: GETs with query
strings and JSON POSTs, 9 request and 6 response headers each (cookies, a bearer
token, the usual browser headers), JSON response bodies of 0.3-0.9 KB and JSON request
bodies of about half that, timings, spread over ``--pages`` pages in order and 50 ms
apart. ``--pages-last`` writes ``log.pages`` after ``log.entries`` (HAR allows either
order). Deterministic for given arguments. Written entry by entry: the generator itself
never holds the file. At the defaults an entry is ~1.7 KB: 1,000,000 entries are ~1.7 GB.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
         "Safari/537.36")
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo")


def _record(rng: random.Random, n: int) -> dict[str, object]:
    return {"id": n, "name": " ".join(rng.choices(WORDS, k=3)), "price": round(rng.uniform(1, 500), 2),
            "tags": rng.choices(WORDS, k=4), "stock": rng.randint(0, 1000), "active": rng.random() > 0.2,
            "updated": f"2026-01-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"}


def _json_body(rng: random.Random, low: int, high: int) -> bytes:
    target = rng.randint(low, high)
    items: list[dict[str, object]] = []
    body = b""
    while len(body) < target:
        items.append(_record(rng, rng.randint(1, 99999)))
        body = orjson.dumps({"items": items, "page": len(items), "total": 4242})
    return body


def _headers(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


def entry(rng: random.Random, index: int, page: str, started: datetime) -> dict[str, object]:
    post = index % 4 == 3
    resource = rng.choice(("items", "orders", "carts", "users", "search"))
    if post:
        url = f"https://api.shop.example/v2/{resource}"
    else:
        url = f"https://api.shop.example/v2/{resource}/{rng.randint(1, 99999)}?fields=all&page={rng.randint(1, 50)}"
    request_headers = [
        ("Host", "api.shop.example"), ("User-Agent", AGENT), ("Accept", "application/json, text/plain, */*"),
        ("Accept-Language", "en-US,en;q=0.9"), ("Accept-Encoding", "gzip, deflate, br"),
        ("Authorization", f"Bearer eyJhbGciOiJIUzI1NiJ9.{index % 997:08x}.sig"),
        ("Cookie", f"sid=s{index // 5000:06d}; theme=dark"),
        ("X-Request-Id", f"{rng.getrandbits(64):016x}"),
    ]
    request: dict[str, object] = {"method": "POST" if post else "GET", "url": url, "httpVersion": "h2",
                                  "headers": [], "queryString": [], "cookies": [], "headersSize": -1,
                                  "bodySize": 0}
    if post:
        body = _json_body(rng, 100, 300).decode()
        request_headers.append(("Content-Type", "application/json"))
        request["postData"] = {"mimeType": "application/json", "text": body}
        request["bodySize"] = len(body)
    request["headers"] = _headers(request_headers)
    text = _json_body(rng, 200, 700).decode()
    response_headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(text))),
                        ("Cache-Control", "no-store"), ("Date", "Fri, 02 Jan 2026 10:00:00 GMT"),
                        ("Server", "nginx"), ("X-Request-Id", f"{rng.getrandbits(64):016x}")]
    wait = round(rng.uniform(5, 80), 3)
    return {
        "pageref": page, "startedDateTime": started.isoformat().replace("+00:00", "Z"),
        "time": round(wait + 3.5, 3), "request": request,
        "response": {"status": 201 if post else 200, "statusText": "", "httpVersion": "h2",
                     "headers": _headers(response_headers), "cookies": [],
                     "content": {"size": len(text), "mimeType": "application/json", "text": text},
                     "redirectURL": "", "headersSize": -1, "bodySize": len(text)},
        "cache": {}, "timings": {"blocked": 1.2, "dns": -1, "ssl": -1, "connect": -1, "send": 0.3, "wait": wait,
                                 "receive": 2.0},
        "serverIPAddress": "203.0.113.7", "connection": "443",
    }


def write_har(path: Path, entries: int, pages: int, pages_last: bool = False, seed: int = 10) -> int:
    """Write the HAR; returns its size in bytes."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    per_page = max(1, -(-entries // max(pages, 1)))
    page_list = [{"startedDateTime": (t0 + timedelta(milliseconds=50 * i * per_page)).isoformat(),
                  "id": f"page_{i + 1}", "title": f"Shop app, view {i + 1}", "pageTimings": {}}
                 for i in range(pages)]
    head = b'{"log":{"version":"1.2","creator":{"name":"big_har.py","version":"1"},'
    with path.open("wb", buffering=1 << 20) as fh:
        fh.write(head)
        if not pages_last:
            fh.write(b'"pages":' + orjson.dumps(page_list) + b",")
        fh.write(b'"entries":[')
        for i in range(entries):
            item = entry(rng, i, f"page_{i // per_page + 1}", t0 + timedelta(milliseconds=50 * i))
            fh.write((b"," if i else b"") + orjson.dumps(item))
        fh.write(b"]")
        if pages_last:
            fh.write(b',"pages":' + orjson.dumps(page_list))
        fh.write(b"}}\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--pages-last", action="store_true", help="log.pages after log.entries")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    size = write_har(args.output, args.entries, args.pages, args.pages_last)
    print(f"{args.output}: {args.entries} entries, {args.pages} pages, {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
