"""The bundled demo target: a small shop that recordings are made against and replayed to.

It is the embedded default of ``replay demo`` and the target of the end-to-end tests and
benchmarks, so it carries the things a replay has to get right on a real service: HTML
pages and a JSON API, paginated lists, a form login that hands out a session cookie, and
per-session state (a cart) that only works when the cookie is replayed live.

It also keeps its own record of what reached it (``GET /__log``, cleared by
``POST /__reset``): tests compare that with what the replayer claims to have sent.
Paths under ``/__`` are never logged, so watching the target does not disturb it.

Run it in its own process; the first line on stdout says where it listens::

    python -m traffic_replay.demo --port 0
    demo target listening on http://127.0.0.1:54321

Importing this module neither imports nor patches gevent (``create_app()`` builds the
Flask app for in-process use); only ``main()`` does, because gevent's monkey patching
must never leak into a process that runs asyncio (the recorder side).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Flask, g, jsonify, redirect, render_template, request
from jinja2 import DictLoader
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from traffic_replay.demo.selling import selling_blueprint

PAGE_SIZE = 10
DEMO_PASSWORD = "demo"
SESSION_COOKIE = "sid"
# A long load test logs in millions of times; beyond these caps the oldest entries go,
# so the target's memory stays flat however long it runs.
MAX_LOG = 200_000
MAX_SESSIONS = 100_000
CATEGORIES = ("books", "games", "garden", "music", "tools")


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    name: str
    price: float
    category: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "price": self.price, "category": self.category}


def demo_items(count: int = 50) -> dict[int, Item]:
    """The catalogue, identical on every start so that recordings replay against it."""
    return {
        i: Item(i, f"Item {i}", round(4.99 + (i * 37) % 90, 2), CATEGORIES[i % len(CATEGORIES)])
        for i in range(1, count + 1)
    }


@dataclass
class DemoState:
    """Everything the app remembers; one per app, so in-process apps never share state."""

    items: dict[int, Item] = field(default_factory=demo_items)
    # sid -> username, oldest first so that eviction drops the stalest session.
    sessions: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # Carts belong to a login session, not to a username: many virtual users replay the
    # same recorded username at once and must not see each other's carts.
    carts: dict[str, dict[int, int]] = field(default_factory=dict)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_LOG))

    def login(self, username: str) -> str:
        sid = secrets.token_urlsafe(18)
        self.sessions[sid] = username
        if len(self.sessions) > MAX_SESSIONS:
            old, _ = self.sessions.popitem(last=False)
            self.carts.pop(old, None)
        return sid

    def logout(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self.carts.pop(sid, None)

    def cart_json(self, sid: str) -> list[dict[str, Any]]:
        lines = self.carts.get(sid, {})
        return [{**self.items[i].as_json(), "qty": qty} for i, qty in lines.items() if i in self.items]

    def search(self, q: str, page: int) -> tuple[list[Item], int]:
        """One page of the items whose name contains ``q``, and how many match in all."""
        needle = q.strip().lower()
        found = [it for it in self.items.values() if needle in it.name.lower()]
        start = (page - 1) * PAGE_SIZE
        return found[start : start + PAGE_SIZE], len(found)


_TEMPLATES = {
    "base.html": """<!doctype html>
<html><head><meta charset="utf-8"><title>{% block title %}Demo shop{% endblock %}</title></head><body>
<nav><a href="/">Home</a> | <a href="/items">Items</a> |
{% if user %}<a href="/account">{{ user }}</a>
<form method="post" action="/logout" style="display:inline"><button>Log out</button></form>
{% else %}<a href="/login">Log in</a>{% endif %}</nav>
<main>{% block main %}{% endblock %}</main></body></html>
""",
    "home.html": """{% extends "base.html" %}{% block main %}
<h1>Demo shop</h1>
<p>Browse <a href="/items">all items</a> or <a href="/login">log in</a> to fill a cart.</p>
{% endblock %}""",
    "items.html": """{% extends "base.html" %}{% block title %}Items{% endblock %}{% block main %}
<h1>Items</h1>
<form method="get" action="/items"><input name="q" value="{{ q }}"><button>Search</button></form>
<ul>{% for it in items %}
<li><a href="/items/{{ it.id }}">{{ it.name }}</a> ({{ it.category }}) {{ "%.2f"|format(it.price) }}</li>
{% endfor %}</ul>
<p>{{ total }} items.
{% if page > 1 %}<a href="/items?page={{ page - 1 }}&amp;q={{ q|urlencode }}">Previous</a>{% endif %}
{% if page * page_size < total %}<a href="/items?page={{ page + 1 }}&amp;q={{ q|urlencode }}">Next</a>{% endif %}
</p>{% endblock %}""",
    "item.html": """{% extends "base.html" %}{% block title %}{{ item.name }}{% endblock %}{% block main %}
<h1>{{ item.name }}</h1>
<dl><dt>Price</dt><dd>{{ "%.2f"|format(item.price) }}</dd><dt>Category</dt><dd>{{ item.category }}</dd></dl>
<p><a href="/items">Back to the list</a></p>{% endblock %}""",
    "login.html": """{% extends "base.html" %}{% block title %}Log in{% endblock %}{% block main %}
<h1>Log in</h1>{% if error %}<p class="error">{{ error }}</p>{% endif %}
<form method="post" action="/login">
<label>Username <input name="username" value="{{ username }}"></label>
<label>Password <input name="password" type="password"></label> <button>Log in</button>
</form>{% endblock %}""",
    "account.html": """{% extends "base.html" %}{% block title %}Account{% endblock %}{% block main %}
<h1>Hello {{ user }}</h1><p><a href="/items">Go shopping</a></p>{% endblock %}""",
    "404.html": """{% extends "base.html" %}{% block title %}Not found{% endblock %}{% block main %}
<h1>Not found</h1><p>{{ message }}</p>{% endblock %}""",
}


def _raw_path() -> str:
    """The request target as the client sent it, escapes and all."""
    raw = request.environ.get("RAW_URI")
    if raw is not None:
        return str(raw)
    # A server that keeps no raw URI: rebuild it (exact unless the client escaped
    # characters that need no escaping). WSGI hands PATH_INFO over as latin-1.
    path = quote(request.environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    query = request.environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def _page_arg() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


def _json_error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def create_app(state: DemoState | None = None) -> Flask:
    """Build the demo app; pass ``state`` to inspect or preload it in-process."""
    st = state if state is not None else DemoState()
    app = Flask(__name__)
    app.jinja_loader = DictLoader(_TEMPLATES)
    # Keys in the order we wrote them: the log reads naturally and nothing is sorted per reply.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["demo_target"] = st

    @app.before_request
    def _arrive() -> None:
        arrived = time.time()
        sid = request.cookies.get(SESSION_COOKIE)
        g.sid = sid if sid in st.sessions else None
        g.user = st.sessions[g.sid] if g.sid else None
        if request.path.startswith("/__"):
            g.entry = None
            return
        # Logged at arrival, not at completion, so the log is in the order requests came
        # in; "status" stays None while a request is in flight. The body is read (and
        # cached for form and JSON parsing) here, because after a form parse it is gone.
        g.entry = {
            "method": request.method,
            "path": _raw_path(),
            "body": request.get_data(cache=True).decode("utf-8", errors="replace"),
            "user": g.user,
            "status": None,
            "t": arrived,
        }
        st.log.append(g.entry)

    @app.after_request
    def _answered(resp: Response) -> Response:
        entry = g.get("entry")
        if entry is not None:
            entry["status"] = resp.status_code
        return resp

    @app.context_processor
    def _user() -> dict[str, Any]:
        return {"user": g.get("user")}

    @app.errorhandler(404)
    def _not_found(exc: NotFound) -> tuple[Response | str, int]:
        if request.path.startswith("/api/"):
            return _json_error("not found", 404)
        return render_template("404.html", message=exc.description), 404

    @app.get("/")
    def home() -> str:
        return render_template("home.html")

    @app.get("/items")
    def items_page() -> str:
        q, page = request.args.get("q", ""), _page_arg()
        items, total = st.search(q, page)
        return render_template("items.html", items=items, total=total, page=page, q=q, page_size=PAGE_SIZE)

    @app.get("/items/<int:item_id>")
    def item_page(item_id: int) -> tuple[str, int]:
        item = st.items.get(item_id)
        if item is None:
            return render_template("404.html", message=f"There is no item {item_id}."), 404
        return render_template("item.html", item=item), 200

    @app.get("/api/items")
    def items_api() -> Response:
        page = _page_arg()
        items, total = st.search(request.args.get("q", ""), page)
        return jsonify(items=[it.as_json() for it in items], page=page, total=total)

    @app.get("/api/items/<int:item_id>")
    def item_api(item_id: int) -> Response | tuple[Response, int]:
        item = st.items.get(item_id)
        if item is None:
            return _json_error(f"no item {item_id}", 404)
        return jsonify(item.as_json())

    @app.get("/login")
    def login_form() -> str:
        return render_template("login.html", error=None, username="")

    @app.post("/login")
    def login() -> Response | tuple[str, int]:
        username = request.form.get("username", "").strip()
        if not username or request.form.get("password") != DEMO_PASSWORD:
            page = render_template("login.html", error="Wrong username or password.", username=username)
            return page, 401
        resp = redirect("/account", 302)
        resp.set_cookie(SESSION_COOKIE, st.login(username), httponly=True, path="/", samesite="Lax")
        return resp

    @app.get("/account")
    def account() -> Response | str:
        if g.user is None:
            return redirect("/login", 302)
        return render_template("account.html")

    @app.post("/logout")
    def logout() -> Response:
        if g.sid is not None:
            st.logout(g.sid)
        resp = redirect("/", 302)
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
        return resp

    @app.get("/api/cart")
    def cart() -> Response | tuple[Response, int]:
        if g.sid is None:
            return _json_error("login required", 401)
        return jsonify(cart=st.cart_json(g.sid))

    @app.post("/api/cart")
    def add_to_cart() -> tuple[Response, int]:
        if g.sid is None:
            return _json_error("login required", 401)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _json_error("expected a JSON object {item_id, qty}", 400)
        item_id, qty = body.get("item_id"), body.get("qty", 1)
        # bool is an int subclass; true/false is a malformed body, not item 1 or 0.
        if type(item_id) is not int or type(qty) is not int or not 1 <= qty <= 1000:
            return _json_error("item_id and qty must be integers, qty from 1 to 1000", 400)
        if item_id not in st.items:
            return _json_error(f"no item {item_id}", 404)
        lines = st.carts.setdefault(g.sid, {})
        lines[item_id] = lines.get(item_id, 0) + qty
        return jsonify(cart=st.cart_json(g.sid)), 201

    @app.get("/__log")
    def log() -> Response:
        return jsonify(requests=list(st.log))

    @app.post("/__reset")
    def reset() -> tuple[str, int]:
        st.log.clear()
        return "", 204

    app.register_blueprint(selling_blueprint(st, session_cookie=SESSION_COOKIE, password=DEMO_PASSWORD))
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the ready line on stdout carries the real port."""
    # Patched here and only here (see the module docstring). It makes any blocking call a
    # future endpoint makes (a deliberate stall, say) yield to the other requests.
    from gevent import monkey

    monkey.patch_all()

    import gevent
    from gevent.event import Event
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class RawUriHandler(WSGIHandler):  # type: ignore[misc]
        def handle(self) -> None:
            # pywsgi writes headers and body in two sends; with Nagle on, every keep-alive
            # request after the first waits ~40 ms for a delayed ACK.
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

        # pywsgi decodes PATH_INFO and keeps no raw URI; the log must show the path as sent.
        def get_environ(self) -> dict[str, Any]:
            env: dict[str, Any] = super().get_environ()
            env["RAW_URI"] = self.path
            return env

    parser = argparse.ArgumentParser(prog="python -m traffic_replay.demo", description="Serve the demo target.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 for a free one (default: %(default)s)")
    args = parser.parse_args(argv)
    # log=None: no access log line per request, which would cost more than the request;
    # errors still go to stderr through pywsgi's error_log.
    server = WSGIServer((args.host, args.port), create_app(), log=None, handler_class=RawUriHandler)
    try:
        server.start()  # binds now, so that port 0 is resolved before we announce it
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else e
        print(f"demo target: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    host, port = server.address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"demo target listening on http://{shown}:{port}", flush=True)

    stop = Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    server.stop(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
