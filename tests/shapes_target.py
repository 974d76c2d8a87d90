"""A JSON API whose server-chosen ids come in many shapes: the target of the id-shape tests (issue 9).

    python tests/shapes_target.py --port 0 [--log FILE.jsonl]

Prints ``listening on http://127.0.0.1:PORT`` once it serves; binds 127.0.0.1 only; starts
from fresh state, so that the first object of every shape gets the shape's first id (``1``
for ``n1``), and the first user to log in gets user id ``1`` (an earlier answer holding the
same ``1``: the wrong-source trap).

- ``POST /api/login`` {"username"} gives a new bearer token (32 hex) for that user; a
  user's id is fixed by its name, counted from 1. ``GET /api/me`` answers it again.
- ``POST /api/<shape>/objects`` (token required) creates an object with an id the server
  chooses, new per object (never reused, even after a delete): 201, ``Location``.
  ``GET``, ``PATCH``, ``DELETE /api/<shape>/objects/<id>``: 404 unknown, 403 not the owner.
- ``/api/contents[/<path>]``: a notebook-style file tree (like Jupyter's contents API).
  ``POST /api/contents[/<dir>]`` (empty body or {"type": "file"}) creates ``untitled.txt``,
  then ``untitled1.txt``...; {"type": "directory"} creates ``Untitled Folder``, then
  ``Untitled Folder 1``... Unlike Jupyter a name is never handed out twice in a directory,
  so a replay never gets the recorded name back by chance. At start the tree holds the
  shared directories ``done``, ``drafts`` and ``drafts/done`` (``drafts`` already holds
  ``untitled.txt``, ``untitled1.txt`` and ``untitled2.txt``: the first file created there
  is ``drafts/untitled3.txt``). ``PATCH`` {"path": NEW} moves (404 source missing, 409 target
  exists), ``GET`` and ``DELETE`` as for objects.
- Small fixtures for the negative matrix: ``GET /api/items?page=&size=`` (echoes the page
  and size the client chose), ``GET /api/users/<name>`` (echoes the name, constants
  ``lang`` "en" and ``active`` true), ``POST /api/cart`` {"quantity"} (token optional; ids
  from 17) and ``GET``/``PATCH /api/cart/<id>``.

Every request is logged (``GET /_log`` answers {"entries": [...]}, and ``--log`` appends
JSON lines): the requesting user (name and id), method, path, shape, the object touched
(id, or contents path before the request), its owner's id and name at that moment (None
if there is no such object or it has no owner), the move target, and the status.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
import re
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SHAPES = ("n1", "n1-me", "n7", "n42", "n1001", "uuid", "ulid", "objectid", "relay", "code")
"""The object shapes served under ``/api/<shape>/objects``."""


def _ulid() -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class _ObjectIds:
    """The ids of one shape: a fresh generator per server."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        numbered = re.fullmatch(r"n(\d+)(?:-[a-z]+)?", shape)  # "n1-me": another counter from 1
        self._counter = itertools.count(int(numbered.group(1)) if numbered else 1)
        self._process = secrets.token_bytes(5)
        self._oid_counter = itertools.count(secrets.randbits(24))
        self._codes: set[str] = set()

    def next(self) -> str | int:
        if self.shape.startswith("n"):
            return next(self._counter)
        if self.shape == "uuid":
            return str(uuid.uuid4())
        if self.shape == "ulid":
            return _ulid()
        if self.shape == "objectid":
            raw = int(time.time()).to_bytes(4, "big") + self._process + \
                (next(self._oid_counter) & 0xFFFFFF).to_bytes(3, "big")
            return raw.hex()
        if self.shape == "relay":  # Relay global ids: base64 of "Type:N" ("SXRlbTox" is Item:1)
            return base64.b64encode(f"Item:{next(self._counter)}".encode()).decode()
        if self.shape == "code":  # a short alphabetic code, never handed out twice
            for length in itertools.count(2):
                for _ in range(50):
                    code = "".join(random.choices(string.ascii_uppercase, k=length))
                    if code not in self._codes:
                        self._codes.add(code)
                        return code
        raise ValueError(self.shape)


class State:
    """Everything the server knows; one lock, held for each request's work."""

    def __init__(self, log_path: str | None) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, int] = {}
        self.tokens: dict[str, str] = {}  # token -> username
        self.ids = {shape: _ObjectIds(shape) for shape in SHAPES}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        # Contents: path -> model (owner: a user id); "" is the root. Shared entries have owner None.
        self.contents: dict[str, dict[str, Any]] = {}
        self.counters: dict[tuple[str, str], Iterator[int]] = {}
        for path in ("", "done", "drafts", "drafts/done"):
            self.contents[path] = _model(path, "directory", None)
        for name in ("untitled.txt", "untitled1.txt", "untitled2.txt"):
            self.contents[f"drafts/{name}"] = _model(f"drafts/{name}", "file", None)
        self.cart: dict[int, dict[str, Any]] = {}
        self.cart_ids = itertools.count(17)
        self.log: list[dict[str, Any]] = []
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115

    def record(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        if self.log_file is not None:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def untitled(self, parent: str, kind: str) -> str:
        """The next name never handed out in ``parent`` (and free there)."""
        counter = self.counters.setdefault((parent, kind), itertools.count(0))
        while True:
            n = next(counter)
            if kind == "directory":
                name = "Untitled Folder" + (f" {n}" if n else "")
            else:
                name = f"untitled{n or ''}.txt"
            path = f"{parent}/{name}" if parent else name
            if path not in self.contents:
                return path


def _model(path: str, kind: str, owner: int | None) -> dict[str, Any]:
    return {"name": path.rsplit("/", 1)[-1], "path": path, "type": kind, "owner": owner}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms to each.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON log is the record

    def _reply(self, status: int, body: object = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _serve(self) -> None:
        state = self.server.state
        body = self._body()
        url = urlsplit(self.path)
        if url.path == "/_log" and self.command == "GET":
            with state.lock:
                entries = list(state.log)
            self._reply(200, {"entries": entries})
            return
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        with state.lock:
            username = state.tokens.get(token)
            entry: dict[str, Any] = {"user": username, "user_id": state.users.get(username or ""),
                                     "method": self.command, "path": self.path, "shape": None, "object": None,
                                     "owner": None, "owner_name": None, "target": None}
            status: int
            answer: object
            headers: tuple[tuple[str, str], ...]
            if body is None:
                status, answer, headers = 400, {"error": "not JSON"}, ()
            else:
                status, answer, headers = self._route(state, url.path, parse_qs(url.query), body, username, entry)
            entry["status"] = status
            state.record(entry)
        self._reply(status, answer, headers)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def _route(self, state: State, path: str, query: dict[str, list[str]], body: Any, username: str | None,
               entry: dict[str, Any]) -> tuple[int, object, tuple[tuple[str, str], ...]]:
        method = self.command
        if path == "/api/login" and method == "POST":
            name = str(body.get("username") or "")
            if not name:
                return 400, {"error": "username required"}, ()
            user_id = state.users.setdefault(name, len(state.users) + 1)
            token = secrets.token_hex(16)
            state.tokens[token] = name
            entry.update(user=name, user_id=user_id)
            return 200, {"token": token, "user": {"id": user_id, "name": name}}, ()
        if path == "/api/items" and method == "GET":
            page, size = int(query.get("page", ["1"])[0]), int(query.get("size", ["10"])[0])
            first = (page - 1) * size + 21 if page > 1 else 1
            items = [{"sku": f"sku-{n:05d}", "title": f"item {n}"} for n in range(first, first + min(size, 3))]
            return 200, {"page": page, "size": size, "items": items}, ()
        if (m := re.fullmatch(r"/api/users/([^/]+)", path)) and method == "GET":
            return 200, {"name": unquote(m.group(1)), "lang": "en", "active": True}, ()
        if path == "/api/cart" and method == "POST":
            cart_id = next(state.cart_ids)
            state.cart[cart_id] = {"id": cart_id, "quantity": body.get("quantity"), "owner": username}
            entry.update(shape="cart", object=cart_id, owner_name=username)
            return 201, {"id": cart_id, "quantity": body.get("quantity")}, (("Location", f"/api/cart/{cart_id}"),)
        if (m := re.fullmatch(r"/api/cart/(\d+)", path)) and method in ("GET", "PATCH"):
            item = state.cart.get(int(m.group(1)))
            entry.update(shape="cart", object=int(m.group(1)))
            if item is None:
                return 404, {"error": "no such cart line"}, ()
            if method == "PATCH":
                item["quantity"] = body.get("quantity", item["quantity"])
            return 200, {"id": item["id"], "quantity": item["quantity"]}, ()
        if username is None:
            return 401, {"error": "bearer token required"}, ()
        if path == "/api/me" and method == "GET":
            return 200, {"id": state.users[username], "name": username}, ()
        if m := re.fullmatch(r"/api/([a-z0-9-]+)/objects(?:/([^/]+))?", path):
            return self._objects(state, m.group(1), unquote(m.group(2)) if m.group(2) else None, body, username,
                                 entry)
        if m := re.fullmatch(r"/api/contents(?:/(.*))?", path):
            return self._contents(state, unquote(m.group(1) or "").strip("/"), body, username, entry)
        return 404, {"error": "no such endpoint"}, ()

    def _objects(self, state: State, shape: str, object_id: str | None, body: Any, username: str,
                 entry: dict[str, Any]) -> tuple[int, object, tuple[tuple[str, str], ...]]:
        if shape not in state.ids:
            return 404, {"error": "no such shape"}, ()
        method = self.command
        entry["shape"] = shape
        owner_id = state.users[username]
        if object_id is None:
            if method != "POST":
                return 405, {"error": "POST to create"}, ()
            new_id = state.ids[shape].next()
            created: dict[str, Any] = {"id": new_id, "owner": owner_id, "title": str(body.get("title", ""))}
            state.objects[(shape, str(new_id))] = created
            entry.update(object=str(new_id), owner=owner_id, owner_name=username)
            return 201, created, (("Location", f"/api/{shape}/objects/{quote(str(new_id), safe='')}"),)
        entry["object"] = object_id
        obj = state.objects.get((shape, object_id))
        if obj is None:
            return 404, {"error": "no such object"}, ()
        entry.update(owner=obj["owner"], owner_name=_name_of(state, obj["owner"]))
        if obj["owner"] != owner_id:
            return 403, {"error": "not yours"}, ()
        if method == "GET":
            return 200, obj, ()
        if method == "PATCH":
            obj["title"] = str(body.get("title", obj["title"]))
            return 200, obj, ()
        if method == "DELETE":
            del state.objects[(shape, object_id)]
            return 204, None, ()
        return 405, {"error": "method not allowed"}, ()

    def _contents(self, state: State, path: str, body: Any, username: str,
                  entry: dict[str, Any]) -> tuple[int, object, tuple[tuple[str, str], ...]]:
        method = self.command
        entry.update(shape="contents", object=path)
        found = state.contents.get(path)
        if found is not None and found["owner"] is not None:
            entry.update(owner=found["owner"], owner_name=_name_of(state, found["owner"]))
        if method == "POST":
            if found is None or found["type"] != "directory":
                return 404, {"error": "no such directory"}, ()
            kind = "directory" if body.get("type") == "directory" else "file"
            new = state.untitled(path, kind)
            state.contents[new] = _model(new, kind, state.users[username])
            entry.update(object=new, owner=state.users[username], owner_name=username)
            return 201, state.contents[new], (("Location", f"/api/contents/{quote(new)}"),)
        if found is None:
            return 404, {"error": "no such file or directory"}, ()
        if method == "GET":
            if found["type"] == "directory":
                children = [m for p, m in state.contents.items() if p and p.rsplit("/", 1)[0] == path and p != path]
                return 200, {**found, "content": children}, ()
            return 200, {**found, "content": ""}, ()
        if found["owner"] != state.users[username]:
            return 403, {"error": "not yours"}, ()
        if method == "PATCH":
            target = str(body.get("path") or "").strip("/")
            entry["target"] = target
            parent = target.rsplit("/", 1)[0] if "/" in target else ""
            if not target or state.contents.get(parent, {}).get("type") != "directory":
                return 404, {"error": "no such target directory"}, ()
            if target in state.contents:
                return 409, {"error": "target exists"}, ()
            for old in [p for p in state.contents if p == path or p.startswith(path + "/")]:
                moved = target + old[len(path):]
                state.contents[moved] = {**state.contents.pop(old), "path": moved,
                                         "name": moved.rsplit("/", 1)[-1]}
            return 200, state.contents[target], ()
        if method == "DELETE":
            for old in [p for p in state.contents if p == path or p.startswith(path + "/")]:
                del state.contents[old]
            return 204, None, ()
        return 405, {"error": "method not allowed"}, ()


def _name_of(state: State, user_id: int) -> str | None:
    return next((name for name, uid in state.users.items() if uid == user_id), None)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None, help="also append each log entry to this JSON-lines file")
    args = parser.parse_args(argv)
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.log)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if server.state.log_file is not None:
            server.state.log_file.close()


if __name__ == "__main__":
    main()
