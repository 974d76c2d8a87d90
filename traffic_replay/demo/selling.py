"""The demo target's "sell an item" area: a flow that only replays with live correlation.

Every value the server hands out here is fresh per virtual user and checked on the way
back, so replaying a recording verbatim fails at each step:

- ``GET /signin`` mints a single-use CSRF token bound to an anonymous ``pre`` cookie;
  ``POST /signin`` only accepts it once, from that cookie (else 403).
- ``GET /sell`` puts a per-render token in ``<meta name="csrf-token">``; ``POST
  /api/listings`` needs it in ``X-CSRF-Token`` from the same login (else 403).
- Listings get server-assigned ids (from 1000 up) and are visible only to the login
  (``sid``) that created them (else 404).
- ``POST /api/token`` hands out a bearer token that ``GET /api/me`` accepts only on
  behalf of the login that minted it (else 401).

Logins are the app's own ``DemoState`` sessions (the ``sid`` cookie), so the request
log shows who did what. The blueprint is built by :func:`selling_blueprint`; its state
is reachable in-process as ``app.extensions["demo_selling"]``.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, g, jsonify, redirect, render_template, request
from flask.blueprints import BlueprintSetupState
from jinja2 import DictLoader
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    # Only for the annotations: demo_target imports this module, not the other way round.
    from traffic_replay.demo.target import DemoState

PRE_COOKIE = "pre"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
FIRST_LISTING_ID = 1000
# A user may have a few tabs open, each rendered with its own token; older ones lapse.
RECENT_TOKENS = 8
# Bounds every table here, as MAX_SESSIONS does in demo_target: a long load test signs
# in millions of times and the target's memory must stay flat.
MAX_ENTRIES = 100_000
MAX_NAME_LENGTH = 200
MAX_PRICE = 1_000_000

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Listing:
    id: int
    name: str
    price: float
    owner: str
    # The login that created it; never shown, it is what makes the listing private.
    sid: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "price": self.price, "owner": self.owner}


@dataclass
class SellingState:
    """What the sell area remembers, beside the app's sessions; every table is capped."""

    # Lower it in-process to watch eviction; it applies from the next insertion on.
    cap: int = MAX_ENTRIES
    # pre cookie -> its unused sign-in form tokens.
    form_tokens: OrderedDict[str, deque[str]] = field(default_factory=OrderedDict)
    # sid -> the tokens of its latest /sell renders.
    page_tokens: OrderedDict[str, deque[str]] = field(default_factory=OrderedDict)
    listings: OrderedDict[int, Listing] = field(default_factory=OrderedDict)
    # bearer token -> (sid, username) of the login that asked for it.
    bearers: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    # next() on a count is atomic under the GIL, and greenlets only switch on I/O.
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_LISTING_ID))

    def _put(self, table: OrderedDict[_K, _V], key: _K, value: _V) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.cap:
            table.popitem(last=False)

    def new_pre(self) -> str:
        pre = secrets.token_urlsafe(18)
        self._put(self.form_tokens, pre, deque(maxlen=RECENT_TOKENS))
        return pre

    def mint_form_token(self, pre: str) -> str:
        token = secrets.token_urlsafe(16)
        tokens = self.form_tokens[pre]
        tokens.append(token)
        self._put(self.form_tokens, pre, tokens)  # an active visitor is not the one to evict
        return token

    def spend_form_token(self, pre: str | None, token: str) -> bool:
        """Whether ``token`` was minted for ``pre`` and not used yet; it is used up now."""
        tokens = self.form_tokens.get(pre) if pre is not None else None
        found = _find(tokens, token) if tokens is not None else None
        if tokens is None or found is None:
            return False
        tokens.remove(found)
        return True

    def mint_page_token(self, sid: str) -> str:
        token = secrets.token_urlsafe(16)
        tokens = self.page_tokens.get(sid) or deque(maxlen=RECENT_TOKENS)
        tokens.append(token)
        self._put(self.page_tokens, sid, tokens)
        return token

    def page_token_ok(self, sid: str, token: str) -> bool:
        # Not spent on use: a page posts several listings with the token it was rendered with.
        tokens = self.page_tokens.get(sid)
        return tokens is not None and _find(tokens, token) is not None

    def add_listing(self, name: str, price: float, owner: str, sid: str) -> Listing:
        listing = Listing(next(self.ids), name, price, owner, sid)
        self._put(self.listings, listing.id, listing)
        return listing

    def mint_bearer(self, sid: str, username: str) -> str:
        token = secrets.token_hex(16)
        self._put(self.bearers, token, (sid, username))
        return token


def _find(tokens: deque[str], token: str) -> str | None:
    # Constant-time compares cost nothing at this size and keep the demo an honest example.
    return next((t for t in tokens if secrets.compare_digest(t, token)), None)


_TEMPLATES = {
    # Its own base rather than the app's, whose <head> has no block for the CSRF meta tag.
    "selling/base.html": """<!doctype html>
<html><head><meta charset="utf-8"><title>{% block title %}Sell{% endblock %}</title>{% block head %}{% endblock %}
</head><body>
<nav><a href="/">Home</a> | <a href="/items">Items</a> | <a href="/sell">Sell</a> |
{% if user %}{{ user }}{% else %}<a href="/signin">Sign in</a>{% endif %}</nav>
<main>{% block main %}{% endblock %}</main></body></html>
""",
    "selling/signin.html": """{% extends "selling/base.html" %}{% block title %}Sign in{% endblock %}
{% block main %}<h1>Sign in to sell</h1>{% if error %}<p class="error">{{ error }}</p>{% endif %}
<form method="post" action="/signin">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label>Username <input name="username" value="{{ username }}"></label>
<label>Password <input name="password" type="password"></label> <button>Sign in</button>
</form>{% endblock %}""",
    "selling/forbidden.html": """{% extends "selling/base.html" %}{% block title %}Forbidden{% endblock %}
{% block main %}<h1>Forbidden</h1><p>{{ message }}</p>
<p><a href="/signin">Open the sign-in form again</a></p>{% endblock %}""",
    "selling/sell.html": """{% extends "selling/base.html" %}{% block title %}Sell an item{% endblock %}
{% block head %}<meta name="csrf-token" content="{{ csrf_token }}">{% endblock %}
{% block main %}<h1>Sell an item</h1>
<form id="sell"><label>Name <input name="name"></label>
<label>Price <input name="price" type="number" step="0.01" min="0"></label> <button>List it</button></form>
<script>
// The form posts JSON from script, as a single-page app would, so a browser recording
// carries the meta token in the X-CSRF-Token header.
document.getElementById("sell").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target, token = document.querySelector('meta[name="csrf-token"]').content;
  const r = await fetch("/api/listings", {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
    body: JSON.stringify({name: f.name.value, price: Number(f.price.value)})});
  if (r.ok) location = r.headers.get("Location");
});
</script>{% endblock %}""",
    "selling/listing.html": """{% extends "selling/base.html" %}{% block title %}{{ listing.name }}{% endblock %}
{% block main %}<h1>{{ listing.name }}</h1>
<dl><dt>Listing</dt><dd>{{ listing.id }}</dd><dt>Price</dt><dd>{{ "%.2f"|format(listing.price) }}</dd>
<dt>Seller</dt><dd>{{ listing.owner }}</dd></dl><p><a href="/sell">Sell another</a></p>{% endblock %}""",
    "selling/not_found.html": """{% extends "selling/base.html" %}{% block title %}Not found{% endblock %}
{% block main %}<h1>Not found</h1><p>{{ message }}</p>{% endblock %}""",
}


def _json_error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def _listing_input(body: object) -> tuple[str, float] | None:
    """The (name, price) of a well-formed POST /api/listings body, else None."""
    if not isinstance(body, dict):
        return None
    name, price = body.get("name"), body.get("price")
    # bool is an int subclass; true is not a price.
    if not isinstance(name, str) or isinstance(price, bool) or not isinstance(price, int | float):
        return None
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not math.isfinite(price) or not 0 <= price <= MAX_PRICE:
        return None
    return name, float(price)


def selling_blueprint(
    state: DemoState, *, session_cookie: str, password: str, selling: SellingState | None = None
) -> Blueprint:
    """The sell area, logging in through ``state``'s sessions under ``session_cookie``."""
    sell = selling if selling is not None else SellingState()
    bp = Blueprint("demo_selling", __name__)
    bp.jinja_loader = DictLoader(_TEMPLATES)

    def _expose(setup: BlueprintSetupState) -> None:
        setup.app.extensions["demo_selling"] = sell

    bp.record_once(_expose)

    def _listing_of_this_login(listing_id: int) -> Listing | None:
        listing = sell.listings.get(listing_id)
        # Unknown and foreign ids answer alike, so ids of other users cannot be probed.
        if listing is None or g.sid is None or listing.sid != g.sid:
            return None
        return listing

    @bp.get("/signin")
    def signin_form() -> Response:
        pre = request.cookies.get(PRE_COOKIE)
        # Only cookies we issued are reused: a replayed or forged one starts afresh.
        fresh = pre is None or pre not in sell.form_tokens
        if fresh:
            pre = sell.new_pre()
        assert pre is not None
        page = render_template("selling/signin.html", csrf_token=sell.mint_form_token(pre), error=None, username="")
        resp = Response(page, 200, mimetype="text/html")
        if fresh:
            resp.set_cookie(PRE_COOKIE, pre, httponly=True, path="/", samesite="Lax")
        return resp

    @bp.post("/signin")
    def signin() -> Response | tuple[str, int]:
        pre = request.cookies.get(PRE_COOKIE)
        if not sell.spend_form_token(pre, request.form.get(CSRF_FORM_FIELD, "")):
            message = "The sign-in form has expired or was already used."
            return render_template("selling/forbidden.html", message=message), 403
        username = request.form.get("username", "").strip()
        if not username or request.form.get("password") != password:
            # The token just spent came from a known pre, so the retry form gets a new one.
            assert pre is not None
            token = sell.mint_form_token(pre) if pre in sell.form_tokens else ""
            page = render_template(
                "selling/signin.html", csrf_token=token, error="Wrong username or password.", username=username
            )
            return page, 401
        resp = redirect("/sell", 302)
        resp.set_cookie(session_cookie, state.login(username), httponly=True, path="/", samesite="Lax")
        return resp

    @bp.get("/sell")
    def sell_page() -> Response | str:
        if g.sid is None:
            return redirect("/signin", 302)
        return render_template("selling/sell.html", csrf_token=sell.mint_page_token(g.sid))

    @bp.post("/api/listings")
    def create_listing() -> tuple[Response, int]:
        if g.sid is None:
            return _json_error("login required", 401)
        if not sell.page_token_ok(g.sid, request.headers.get(CSRF_HEADER, "")):
            return _json_error(f"missing or invalid {CSRF_HEADER} header", 403)
        parsed = _listing_input(request.get_json(silent=True))
        if parsed is None:
            return _json_error(f"expected a JSON object {{name, price}}, price from 0 to {MAX_PRICE}", 400)
        listing = sell.add_listing(*parsed, owner=g.user, sid=g.sid)
        resp = jsonify(listing=listing.as_json())
        resp.headers["Location"] = f"/listings/{listing.id}"
        return resp, 201

    @bp.get("/api/listings/<int:listing_id>")
    def listing_api(listing_id: int) -> Response | tuple[Response, int]:
        listing = _listing_of_this_login(listing_id)
        if listing is None:
            return _json_error(f"no listing {listing_id}", 404)
        return jsonify(listing=listing.as_json())

    @bp.get("/listings/<int:listing_id>")
    def listing_page(listing_id: int) -> tuple[str, int]:
        listing = _listing_of_this_login(listing_id)
        if listing is None:
            return render_template("selling/not_found.html", message=f"There is no listing {listing_id}."), 404
        return render_template("selling/listing.html", listing=listing), 200

    @bp.post("/api/token")
    def issue_token() -> Response | tuple[Response, int]:
        if g.sid is None:
            return _json_error("login required", 401)
        return jsonify(auth={"access_token": sell.mint_bearer(g.sid, g.user), "token_type": "Bearer"})

    @bp.get("/api/me")
    def me() -> Response | tuple[Response, int]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        bound = sell.bearers.get(token.strip()) if scheme.lower() == "bearer" else None
        # A token lives as long as the login that minted it, and a request carrying
        # another login's cookie cannot borrow it: that is what makes a recorded token
        # fail for every virtual user but the one it was minted for.
        if bound is None or bound[0] not in state.sessions or (g.sid is not None and g.sid != bound[0]):
            return _json_error("missing, unknown or foreign bearer token", 401)
        entry = g.get("entry")
        if entry is not None:
            entry["user"] = bound[1]  # the log names the bearer's user even without a cookie
        return jsonify(user=bound[1])

    return bp
