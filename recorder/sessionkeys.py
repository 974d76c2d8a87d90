"""Which session an exchange belongs to: the ``--session-key`` spec and the keys it yields.

Pure Python, no mitmproxy, so that anything grouping exchanges (live recording, an
import) keys them the same way. The spec is one of:

- ``client``: the client's address and User-Agent (the default);
- ``cookie:NAME``: the value of cookie NAME. A client's requests sent before it had the
  cookie join the session of the value that a response then set (the login page and
  the login POST belong to the user who logged in); a response that replaces the value
  (session rotation at login) carries the old session over to the new value;
- ``header:NAME``: the value of request header NAME (an API key, a device id).

Requests that carry no cookie or header fall back to the client key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from traffic_replay.correlation.places import set_cookie_pair
from traffic_replay.specs import KeyKind, KeySpec, parse_session_key

__all__ = ["ClientKey", "KeyKind", "KeySpec", "Keyed", "SessionKey", "key_for", "parse_session_key",
           "request_cookie", "response_cookie"]

ClientKey = tuple[str, str]
"""(client address, User-Agent): one real client, the default session key."""

SessionKey = tuple[str, ...]
"""A client key, or (kind, name, value) for cookie and header keys: never equal to each other."""


class Keyed(NamedTuple):
    key: SessionKey
    adopt: SessionKey | None = None
    """An open session to merge into ``key``'s first: the same user before the cookie existed."""


def request_cookie(name: str, cookie_headers: Sequence[str]) -> str | None:
    """The value of cookie ``name`` in a request's ``Cookie`` headers, if sent and not empty."""
    found = None
    for header in cookie_headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                found = value.strip().strip('"') or None
    return found


def response_cookie(name: str, set_cookie_headers: Sequence[str]) -> str | None:
    """The value a response's ``Set-Cookie`` headers give cookie ``name``; ``None`` if not set or deleted."""
    found = None
    for header in set_cookie_headers:
        key, value = set_cookie_pair(header)
        if key != name or "=" not in header.partition(";")[0]:
            continue
        attributes = header.partition(";")[2]
        value = value.strip('"')
        deleted = not value or re.search(r"(?i)(^|;)\s*max-age\s*=\s*0*(;|$)", attributes) is not None
        found = None if deleted else value
    return found


def key_for(spec: KeySpec, client: ClientKey, request_values: Sequence[str],
            set_cookies: Sequence[str] = ()) -> Keyed:
    """The session key of one exchange.

    ``request_values`` are the request's values of the header the spec reads (``Cookie``
    for a cookie key, NAME for a header key); ``set_cookies`` the response's ``Set-Cookie``
    values (only read for a cookie key).
    """
    if spec.kind == "client":
        return Keyed(client)
    if spec.kind == "header":
        value = next((v for v in request_values if v), None)
        return Keyed(("header", spec.name, value)) if value else Keyed(client)
    sent = request_cookie(spec.name, request_values)
    got = response_cookie(spec.name, set_cookies) if set_cookies else None
    if got is not None and got != sent:
        before: SessionKey = ("cookie", spec.name, sent) if sent else client
        return Keyed(("cookie", spec.name, got), adopt=before)
    return Keyed(("cookie", spec.name, sent)) if sent else Keyed(client)
