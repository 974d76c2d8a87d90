"""The replay benchmark's workload: eight browser-like requests, its recording, its nginx.

Used by benchmarks/replay_throughput.py (see there); benchmarks/plain_locustfile.py is the
hand-written twin of the workload. `POST /api/items` answers JSON with an id and a token that
the requests after it send back; `correlation_check` confirms our replayer sees them as live
values.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from harness import OK_LOCATION, free_port, log, start_nginx, stub_status_server

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
PAGE = [
    ("User-Agent", UA),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "same-origin"),
]
API = [
    ("User-Agent", UA),
    ("Accept", "application/json, text/plain, */*"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("X-Requested-With", "XMLHttpRequest"),
    ("Referer", "http://shop.example/"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "cors"),
    ("Sec-Fetch-Site", "same-origin"),
]
API_JSON = [*API, ("Content-Type", "application/json"), ("Origin", "http://shop.example")]
PAGE_FORM = [*PAGE, ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "http://shop.example"),
             ("Referer", "http://shop.example/cart"), ("Cache-Control", "max-age=0")]
NEW_ITEM = b'{"name":"Desk lamp","price":1999,"tags":["home","light"]}'
CHECKOUT = b"name=Ada+Lovelace&email=ada%40example.com&address=12+Analytical+Way&country=GB&accept_terms=on"

# What `POST /api/items` answers: an id and a token that the requests after it send back
# (the id in a path and a JSON body, the token in a header). The recording holds these; nginx
# answers the same ones in the timed runs; the wire check's server hands out others.
ITEM_ID, TOKEN = 4711, "t0k3n4711abcdef"
WIRE_ITEM_ID, WIRE_TOKEN = 90210, "w1r3tok90210zyxw"


def created(item_id: int, token: str) -> bytes:
    return b'{"item": {"id": %d, "token": "%s"}}' % (item_id, token.encode())


OK = (200, "text/plain", b"ok\n")


def workload(item_id: int, token: str) -> list[tuple]:
    """(method, path, headers, body or None, stats name, recorded response (status, type, body))."""
    with_token = [("X-Token", token)]
    cart = b'{"item_id":%d,"quantity":2,"options":{"size":"M","colour":"blue"}}' % item_id
    return [
        ("GET", "/", PAGE, None, "/", OK),
        ("GET", "/api/items?page=2&sort=price", API, None, "/api/items", OK),
        ("GET", "/items/17", PAGE, None, "/items/{id}", OK),
        ("POST", "/api/items", API_JSON, NEW_ITEM, "/api/items", (201, "application/json", created(item_id, token))),
        ("GET", f"/api/items/{item_id}", [*API, *with_token], None, "/api/items/{id}", OK),
        ("POST", "/api/cart", [*API_JSON, *with_token], cart, "/api/cart", OK),
        ("POST", "/checkout", PAGE_FORM, CHECKOUT, "/checkout", OK),
        ("GET", "/orders/4242?tab=summary", PAGE, None, "/orders/{id}", OK),
    ]


# The recorded workload; benchmarks/plain_locustfile.py is the hand-written twin of it.
WORKLOAD = workload(ITEM_ID, TOKEN)
# The values our replayer must extract live from `POST /api/items` (checked with `replay inspect`).
LIVE_VALUES = {str(ITEM_ID), TOKEN}


# --- nginx -----------------------------------------------------------------------------

SHOP_LOCATIONS = OK_LOCATION + """\
        # GET lists items ("ok", as recorded); POST creates one and answers its id and token.
        location = /api/items {
            if ($request_method = POST) {
                rewrite ^ /_created last;
            }
            default_type text/plain;
            return 200 "ok\\n";
        }
        location = /_created {
            internal;
            default_type application/json;
            return 201 '{created}';
        }
""".replace("{created}", created(ITEM_ID, TOKEN).decode())


def start_shop_nginx(binary: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """nginx answering the workload on a free port, and its stub_status page on another:
    (process, port, status port)."""
    status_port = free_port()
    proc, port = start_nginx(binary, tmp, SHOP_LOCATIONS, extra_servers=stub_status_server(status_port),
                             http_directives="    keepalive_timeout 120s;\n")
    return proc, port, status_port


# --- the recording ---------------------------------------------------------------------

def write_recording(directory: Path, host: str, port: int) -> None:
    from traffic_replay.format import Body, Request, Response, Session, write_session

    requests = []
    offset = 0.0
    for method, path, headers, body, _name, (status, rtype, rbody) in WORKLOAD:
        # What the browser sent on the wire, as the recorder keeps it: Host, Connection and
        # Content-Length included (the replayer owns those), in the browser's order.
        recorded = [("Host", f"{host}:{port}"), *headers, ("Connection", "keep-alive")]
        if body is not None:
            recorded.append(("Content-Length", str(len(body))))
        ctype = dict(headers).get("Content-Type")
        requests.append(Request(
            offset_ms=offset, duration_ms=4.0, method=method, scheme="http", host=host, port=port, path=path,
            headers=recorded, body=Body.from_bytes(body, ctype) if body is not None else None,
            response=Response(status=status, reason="Created" if status == 201 else "OK", duration_ms=3.0,
                              headers=[("Content-Type", rtype), ("Content-Length", str(len(rbody)))],
                              body=Body.from_bytes(rbody, rtype)),
        ))
        offset += 850.0  # think time: ignored at --speed 0
    session = Session(id="bench-shop", name="shop checkout", weight=1.0,
                      started_at=datetime(2025, 1, 1, tzinfo=UTC), requests=requests)
    write_session(session, directory)


def correlation_check(directory: Path) -> None:
    """Our replayer must see the id and the token as live values, as `replay inspect` lists them.

    Detected from the recording, extracted at step 4 and substituted in steps 5 (path,
    header) and 6 (header, body): otherwise the benchmark would measure a verbatim replay.
    """
    from replayer.prepared import prepare_session
    from traffic_replay.format import load_recordings

    [session] = load_recordings(directory)
    prepared = prepare_session(session, speed=0)
    found = {c.value for c in prepared.variables}
    if found != LIVE_VALUES:
        raise RuntimeError(f"correlation check: detected {sorted(found)}, expected {sorted(LIVE_VALUES)}")
    steps = prepared.steps
    shape = [(s.index, len(s.extract), s.patch is not None) for s in steps]
    expected = [(i, 2 if i == 4 else 0, i in (5, 6)) for i in range(1, len(WORKLOAD) + 1)]
    if shape != expected:
        raise RuntimeError(f"correlation check: (step, extractors, patched) {shape}, expected {expected}")
    five, six = steps[4].patch, steps[5].patch
    if not (five.path and [n for n, _ in five.headers] == ["X-Token"] and not five.body
            and six.body and [n for n, _ in six.headers] == ["X-Token"] and not six.path):
        raise RuntimeError("correlation check: steps 5 and 6 do not carry the id and token where they are sent")
    log("correlation check: the id (path of step 5, body of step 6) and the token (X-Token of steps 5 and 6) "
        "are extracted live from step 4's JSON answer")

