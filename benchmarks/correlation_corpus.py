"""The generated corpus of ``correlation_precision.py``: sessions whose ground truth is known.

Each session creates one object by a POST (201, ``Location``, the id in the JSON answer) with an
id of one of twelve shapes, uses it in GET/PATCH/DELETE paths and JSON bodies, logs in for a
bearer token and a user id (sometimes the object's id too), and sends back what must not be
correlated: the page and size the client chose, the username it typed, constants.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import orjson

from traffic_replay.format import Body, Header, Request, Response, Session

Key = tuple[str, int]  # (value, use step)


@dataclass
class Case:
    """One session with its ground truth."""

    session: Session
    truth: dict[Key, int]  # (value, use step) -> source step
    tag: str = ""  # the generated object's id shape
    negatives: dict[str, str] = field(default_factory=dict)  # value -> why it must not be correlated
    roles: dict[str, str] = field(default_factory=dict)  # value -> what it is ("object id", "access token")


SHAPES = ("1", "7", "42", "1001", "uuid", "ulid", "objectid", "relay", "untitled.txt", "untitled3.txt",
          "Untitled Folder", "code")
NAMES = ("untitled.txt", "untitled3.txt", "Untitled Folder")
NUMERIC = ("1", "7", "42", "1001")
USER_IDS = ("4", "12", "77", "1002", "5150")  # never a page (1-3), size (10, 20, 50) or quantity (1)
USERNAMES = ("ada", "grace", "lin", "tester42", "user_{n}")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REDACTED_PASSWORD = "«redacted:ecb9840e»"
HOST = "api.example.test"
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def shaped(rng: random.Random, shape: str) -> str:
    if shape == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if shape == "ulid":
        return "01J" + "".join(rng.choice(CROCKFORD) for _ in range(23))
    if shape == "objectid":
        return f"{rng.getrandbits(96):024x}"
    if shape == "relay":
        return base64.b64encode(b"Item:1").decode()  # "SXRlbTox", as a GraphQL server names Item 1
    if shape == "code":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((2, 3))))
    return shape  # the numbers and the server-chosen names are themselves


def token(rng: random.Random) -> str:
    form = rng.randrange(3)
    if form == 0:  # JWT-like: dots are not token characters
        claims, signature = (base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=") for n in (24, 32))
        return f"eyJhbGciOiJIUzI1NiJ9.{claims}.{signature}"
    if form == 1:  # opaque
        return rng.randbytes(20).hex()
    return f"«redacted:{rng.getrandbits(32):08x}»"  # as the recorder writes a redacted secret


class _Builder:
    """Requests of one session, appended in order with plausible timing."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.clock = 0.0

    def add(self, method: str, path: str, *, json: object = None, bearer: str | None = None, status: int = 200,
            answer: object = None, location: str | None = None) -> int:
        headers: list[Header] = [("Host", HOST), ("User-Agent", "bench/1.0"), ("Accept", "application/json")]
        if bearer is not None:
            headers.append(("Authorization", f"Bearer {bearer}"))
        body = None
        if json is not None:
            data = orjson.dumps(json)
            headers.append(("Content-Type", "application/json"))
            body = Body(encoding="text", data=data.decode(), content_type="application/json", size=len(data))
        response_headers: list[Header] = [("Date", "Tue, 01 Dec 2026 09:00:00 GMT")]
        response_body = None
        if location is not None:
            response_headers.append(("Location", location))
        if answer is not None:
            data = orjson.dumps(answer)
            response_headers.append(("Content-Type", "application/json"))
            response_body = Body(encoding="text", data=data.decode(), content_type="application/json", size=len(data))
        self.requests.append(Request(
            offset_ms=self.clock, duration_ms=8.0, method=method, scheme="https", host=HOST, port=443, path=path,
            headers=headers, body=body,
            response=Response(status=status, headers=response_headers, duration_ms=6.0, body=response_body)))
        self.clock += 8.0 + 350.0
        return len(self.requests) - 1


def generated_session(rng: random.Random, index: int, shape: str) -> Case:
    b = _Builder()
    truth: dict[Key, int] = {}
    oid = shaped(rng, shape)
    named = shape in NAMES
    # Numbers are JSON numbers; everything else a string.
    oid_json: object = int(oid) if shape in NUMERIC else oid
    username = rng.choice(USERNAMES).format(n=rng.randrange(100_000, 1_000_000))
    page, size = rng.choice((1, 2, 3)), rng.choice((10, 20, 50))
    negatives = {str(page): "page (client's)", str(size): "size (client's)", username: "username (client's)",
                 "en": "constant 'en'", "true": "constant true", "1": "quantity 1 (client's)",
                 REDACTED_PASSWORD: "password placeholder (client's)"}

    # 1. A list page: the server echoes the page and size the client chose.
    b.add("GET", f"/api/items?page={page}&size={size}",
          answer={"page": page, "size": size, "total": rng.randrange(100, 900),
                  "items": [{"name": f"Thing {k}", "public": True} for k in range(3)]})

    # 2. Log in: tokens and a user id (sometimes the very id the object will get).
    same_user = not named and shape != "code" and rng.random() < 0.35
    uid = oid if same_user else rng.choice(USER_IDS)
    uid_json: object = oid_json if same_user else int(uid)
    access, refresh = token(rng), token(rng)
    login = b.add("POST", "/api/login", json={"username": username, "password": REDACTED_PASSWORD},
                  answer={"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                          "user": {"id": uid_json, "name": username, "lang": "en"}})
    bearer, bearer_from = access, login

    def authed(method: str, path: str, json: object = None, status: int = 200, answer: object = None,
               location: str | None = None) -> int:
        step = b.add(method, path, json=json, bearer=bearer, status=status, answer=answer, location=location)
        truth[(bearer, step)] = bearer_from
        return step

    if rng.random() < 0.5:  # the profile, by the user id the login answered
        step = authed("GET", f"/api/users/{uid}", answer={"id": uid_json, "name": username, "lang": "en"})
        truth[(uid, step)] = login
    if rng.random() < 0.3:  # a refresh: a new access token from here on
        step = b.add("POST", "/api/token/refresh", json={"refresh_token": refresh},
                     answer={"access_token": (renewed := token(rng)), "refresh_token": token(rng)})
        truth[(refresh, step)] = login
        bearer, bearer_from = renewed, step

    # 3. The creation: 201, Location and the id in the JSON answer.
    if named:
        base, key = "/api/contents", "name"
        kind = "directory" if shape == "Untitled Folder" else "file"
        created: dict[str, object] = {"name": oid, "path": oid, "type": kind, "writable": True}
        creation = authed("POST", base, json={"type": kind, "ext": "" if kind == "directory" else ".txt"},
                          status=201, answer=created, location=f"{base}/{quote(oid)}")
    elif shape == "code":
        base, key = "/api/rooms", "code"
        created = {"code": oid, "topic": "standup", "public": True, "lang": "en"}
        creation = authed("POST", base, json={"topic": "standup", "public": True, "lang": "en"},
                          status=201, answer=created, location=f"{base}/{oid}")
    else:
        base, key = "/api/items", "id"
        created = {"id": oid_json, "name": "Desk lamp", "quantity": 1, "public": True, "lang": "en"}
        creation = authed("POST", base, json={"name": "Desk lamp", "quantity": 1, "public": True, "lang": "en"},
                          status=201, answer=created, location=f"{base}/{oid}")

    # 4. Uses: paths and JSON bodies, in a random order; echoes of the id are not its source.
    where = oid  # a name's path changes once it is moved into done/
    actions = rng.sample(["get", "patch", "ref"], k=rng.randint(1, 3))
    if named:
        actions = [a for a in actions if a != "patch"] + ["patch", "get"]  # the move, then the composed path
    if rng.random() < 0.5:
        actions.append("delete")
    for action in actions:
        path = f"{base}/{quote(where, safe='/')}"
        if action == "get":
            step = authed("GET", path, answer={**created, "path": where} if named else created)
        elif action == "patch" and named:
            where = f"done/{oid}"  # the client composes it: the server chose only the name
            step = authed("PATCH", path, json={"path": where}, answer={**created, "path": where})
        elif action == "patch":
            step = authed("PATCH", path, json={"quantity": 1, "lang": "en", "public": True},
                          answer={**created, "quantity": 1})
        elif action == "ref" and named:
            step = authed("POST", "/api/sessions", json={"path": where, "type": "notebook", "kernel": {"name": "py"}},
                          status=201, answer={"ok": True})
        elif action == "ref":
            ref = {"item_id": oid_json} if key == "id" else {"room": oid}
            step = authed("POST", "/api/cart", json={**ref, "quantity": 1, "lang": "en"}, status=201,
                          answer={"ok": True})
        else:
            step = authed("DELETE", path, status=204)
        truth[(oid, step)] = creation

    # 5. More of what the client chose: the next page at the same size, a search by username.
    b.add("GET", f"/api/items?page={page + 1}&size={size}",
          answer={"page": page + 1, "size": size, "total": 0, "items": []})
    authed("GET", f"/api/search?owner={username}&lang=en&public=true", answer={"results": [], "owner": username})

    roles = {access: "access token", bearer: "access token", refresh: "refresh token", uid: "user id",
             oid: "object id = user id" if same_user else "object id"}
    for value in {v for v, _ in truth}:
        negatives.pop(value, None)
    session = Session(id=f"gen-{index:04d}", name=f"gen-{index:04d} {shape}", started_at=START, requests=b.requests)
    return Case(session, truth, shape, negatives, roles)


def generated(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [generated_session(rng, i, SHAPES[i % len(SHAPES)]) for i in range(count)]
