"""A target with a fresh database: the ids and names a new installation hands out first.

    python tests/fresh_target.py --port 0      # prints "listening on http://127.0.0.1:PORT"

Token auth (``POST /api/login`` → a bearer token and a user id, from 1), and per id SHAPE a
small JSON API: ``POST /api/SHAPE/objects`` creates (201, ``Location``), ``GET``, ``PATCH``
and ``DELETE /api/SHAPE/objects/ID`` touch one object (401 without a token, 403 for
another user's object, 404 for an unknown one). Shapes: integers from 1, 7, 42 and 1001,
UUIDs, ULIDs, 24-hex ObjectIds, Relay global ids (base64 of ``Item:N``: ``SXRlbTox`` has no
digit) and 3-letter codes. And a notebook-style contents API per KIND, where the server
names what it creates as Jupyter does (``untitled.txt``, ``untitled1.txt``...; from
``untitled3.txt``; ``Untitled Folder``, ``Untitled Folder 1``...), in one folder shared by
every user: ``POST /api/files/KIND`` creates, ``PATCH /api/files/KIND/PATH {"path": ...}``
moves (409 when the target exists, 404 when the source does not), ``GET``/``DELETE``.

And what a client chooses, which the server only echoes: ``GET /api/items?page=&size=&lang=``,
``POST /api/cart {"quantity": N}`` (a cart id from 1), ``PATCH /api/cart/ID``, ``GET
/api/users/NAME``.

``GET /_log`` lists every request with the user who sent it and the object it touched and
its owner: what the tests check a replay against.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _counter(start: int) -> Callable[[], str]:
    numbers = itertools.count(start)
    return lambda: str(next(numbers))


def _relay() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: base64.b64encode(f"Item:{next(numbers)}".encode()).decode()


def _code() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))


ID_SHAPES: dict[str, Callable[[], Callable[[], str]]] = {
    "n1": lambda: _counter(1), "n7": lambda: _counter(7), "n42": lambda: _counter(42),
    "n1001": lambda: _counter(1001),
    "uuid": lambda: lambda: str(uuid.uuid4()),
    "ulid": lambda: lambda: "".join(secrets.choice(_CROCKFORD) for _ in range(26)),
    "objectid": lambda: lambda: secrets.token_hex(12),
    "relay": _relay,
    "code": lambda: _code,
}


def _names(stem: str, extension: str, first: int | None, sep: str) -> Iterator[str]:
    """Jupyter's naming: ``untitled.txt``, then ``untitled1.txt``; a folder's with a space."""
    if first is None:
        yield f"{stem}{extension}"
        first = 1
    for n in itertools.count(first):
        yield f"{stem}{sep}{n}{extension}"


NAME_KINDS: dict[str, Callable[[], Iterator[str]]] = {
    "txt": lambda: _names("untitled", ".txt", None, ""),
    "txt3": lambda: _names("untitled", ".txt", 3, ""),
    "folder": lambda: _names("Untitled Folder", "", None, " "),
}


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = itertools.count(1)
        self.tokens: dict[str, int] = {}
        self.new_id = {shape: make() for shape, make in ID_SHAPES.items()}
        self.issued: set[str] = set()
        self.objects: dict[str, dict[str, int]] = {shape: {} for shape in ID_SHAPES}  # id -> owner
        self.new_name = {kind: make() for kind, make in NAME_KINDS.items()}
        self.files: dict[str, dict[str, int]] = {kind: {} for kind in NAME_KINDS}  # path -> owner
        self.cart_ids = itertools.count(1)
        self.carts: dict[str, int] = {}
        self.log: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if path == "/_log":
            with self.state.lock:
                self._send(200, {"requests": list(self.state.log)})
            return
        st = self.state
        with st.lock:
            user = st.tokens.get(self.headers.get("Authorization", "").removeprefix("Bearer "))
            entry: dict[str, Any] = {"method": method, "path": self.path, "user": user, "object": None,
                                     "owner": None}
            status, body, headers = self._route(method, path, raw, user, entry)
            entry["status"] = status
            st.log.append(entry)
        self._send(status, body, headers)

    def _route(self, method: str, path: str, raw: bytes, user: int | None, entry: dict[str, Any],
               ) -> tuple[int, Any, dict[str, str]]:
        st = self.state
        parts = path.split("/")  # "", "api", ...
        if path == "/api/login" and method == "POST":
            name = json.loads(raw or b"{}").get("username", "anon")
            uid = next(st.users)
            token = secrets.token_hex(16)
            st.tokens[token] = uid
            return 200, {"token": token, "user": {"id": uid, "name": name}}, {}
        if user is None:
            return 401, {"error": "no token"}, {}
        if path == "/api/items" and method == "GET":
            # Echoes what the client chose: none of it is the server's to hand out.
            query = dict(parse_qsl(urlsplit(self.path).query))
            return 200, {"page": int(query.get("page", 1)), "size": int(query.get("size", 10)),
                         "lang": query.get("lang", "en"), "enabled": True, "items": []}, {}
        if parts[1:3] == ["api", "cart"]:
            return self._cart(method, "/".join(parts[3:]), raw, user, entry)
        if parts[1:3] == ["api", "users"] and len(parts) == 4:
            return 200, {"name": unquote(parts[3]), "id": user}, {}
        if len(parts) >= 4 and parts[1] == "api" and parts[2] in ID_SHAPES and parts[3] == "objects":
            return self._objects(method, parts[2], unquote("/".join(parts[4:])), raw, user, entry)
        if len(parts) >= 4 and parts[1] == "api" and parts[2] == "files" and parts[3] in NAME_KINDS:
            return self._files(method, parts[3], unquote("/".join(parts[4:])), raw, user, entry)
        return 404, {"error": "no such endpoint"}, {}

    def _objects(self, method: str, shape: str, oid: str, raw: bytes, user: int, entry: dict[str, Any],
                 ) -> tuple[int, Any, dict[str, str]]:
        objects = self.state.objects[shape]
        if not oid and method == "POST":
            oid = next(i for i in iter(self.state.new_id[shape], None) if i not in self.state.issued)
            self.state.issued.add(oid)  # random codes repeat; an id is never handed out twice
            objects[oid] = user
            entry.update(object=oid, owner=user)
            return 201, {"id": oid, "owner": user, "shape": shape}, {"Location": f"/api/{shape}/objects/{oid}"}
        entry.update(object=oid, owner=objects.get(oid))
        if oid not in objects:
            return 404, {"error": f"no object {oid}"}, {}
        if objects[oid] != user:
            return 403, {"error": "not yours"}, {}
        if method == "DELETE":
            del objects[oid]
            return 204, None, {}
        return 200, {"id": oid, "owner": user, **(json.loads(raw) if raw else {})}, {}

    def _cart(self, method: str, cid: str, raw: bytes, user: int, entry: dict[str, Any],
              ) -> tuple[int, Any, dict[str, str]]:
        carts = self.state.carts
        if not cid and method == "POST":
            cid = str(next(self.state.cart_ids))
            carts[cid] = user
            entry.update(object=cid, owner=user)
            return 201, {"id": int(cid), **json.loads(raw)}, {}
        entry.update(object=cid, owner=carts.get(cid))
        if carts.get(cid) != user:
            return 404, {"error": f"no cart {cid}"}, {}
        return 200, {"id": int(cid), **(json.loads(raw) if raw else {})}, {}

    def _files(self, method: str, kind: str, name: str, raw: bytes, user: int, entry: dict[str, Any],
               ) -> tuple[int, Any, dict[str, str]]:
        files = self.state.files[kind]
        if not name and method == "POST":
            name = next(n for n in self.state.new_name[kind] if n not in files)
            files[name] = user
            entry.update(object=name, owner=user)
            return 201, {"name": name, "path": name, "type": "directory" if kind == "folder" else "file"}, {
                "Location": f"/api/files/{kind}/{quote(name)}"}
        entry.update(object=name, owner=files.get(name))
        if name not in files:
            return 404, {"error": f"no file {name}"}, {}
        if files[name] != user:
            return 403, {"error": "not yours"}, {}
        if method == "PATCH":
            target = json.loads(raw)["path"]
            if target in files:
                return 409, {"error": f"{target} exists"}, {}
            files[target] = files.pop(name)
            return 200, {"name": target.rsplit("/", 1)[-1], "path": target}, {}
        if method == "DELETE":
            del files[name]
            return 204, None, {}
        return 200, {"name": name.rsplit("/", 1)[-1], "path": name}, {}

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    handler = type("FreshHandler", (Handler,), {"state": State()})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
