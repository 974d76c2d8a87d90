"""Group finished exchanges into user sessions, and close them after an idle gap.

Pure Python, no mitmproxy: the addon feeds it ``Exchange`` tuples built from flows,
tests can feed it directly. Sessions are keyed by a ``SessionKey`` (see
``recorder.sessionkeys``). A session is closed (handed to ``on_close``) when its key has
been silent for ``idle_gap`` seconds, when it has lasted ``max_session`` seconds, or when
recording stops.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from recorder.records import BodyData, Exchange
from recorder.sessionkeys import ClientKey, SessionKey
from traffic_replay.format import Body, ClientInfo, Request, Response, Scheme, Session

__all__ = ["ClientKey", "Closed", "Exchange", "SessionKey", "Sessionizer", "build_session"]


class Closed(NamedTuple):
    """A closed session as the sessionizer held it: its id, the client that opened it, its exchanges."""

    id: str
    client: ClientKey
    exchanges: list[Any]
    """``Exchange`` tuples, or what the caller added in their place (the recorder's ``Spilled``)."""

    def session(self) -> Session:
        return build_session(self.client, self.exchanges, self.id)


class _OpenSession:
    __slots__ = ("id", "key", "client", "exchanges", "first_started", "last_seen")

    def __init__(self, key: SessionKey, client: ClientKey, started: float) -> None:
        # Named when opened, not when written: the crash journal tags each exchange with it.
        self.id = new_session_id(started)
        self.key = key
        self.client = client
        self.exchanges: list[Any] = []
        self.first_started = started
        self.last_seen = 0.0

    def absorb(self, other: _OpenSession) -> None:
        self.exchanges.extend(other.exchanges)  # build_session orders them by start
        if other.first_started < self.first_started:
            self.first_started, self.client = other.first_started, other.client
        self.last_seen = max(self.last_seen, other.last_seen)


class Sessionizer:
    """Holds the open sessions, one per session key."""

    def __init__(self, idle_gap: float, on_close: Callable[[Closed], None], max_session: float | None = None) -> None:
        self.idle_gap = idle_gap
        self.max_session = max_session
        self.on_close = on_close
        """Takes each closed session: ``Closed.session()`` builds its ``Session``."""
        self.on_merge: Callable[[str, str], None] | None = None
        """Called with (absorbed id, surviving id) when two open sessions become one."""
        self._open: dict[SessionKey, _OpenSession] = {}

    @property
    def open_count(self) -> int:
        return len(self._open)

    def add(self, key: SessionKey, exchange: Any, client: ClientKey | None = None,
            adopt: SessionKey | None = None) -> str:
        """Add ``exchange`` to ``key``'s session, after merging ``adopt``'s open session into it.

        Returns the id of the session it joined.

        ``client`` (address, User-Agent) describes the session when it starts; it defaults
        to ``key`` itself, which is a client key in the default grouping.
        """
        if adopt is not None and adopt != key and (orphan := self._open.pop(adopt, None)) is not None:
            target = self._open.get(key)
            if target is None:
                orphan.key = key
                self._open[key] = orphan
            else:
                target.absorb(orphan)
                if self.on_merge is not None:
                    self.on_merge(orphan.id, target.id)
        current = self._open.get(key)
        if current is not None and self._expired(current, exchange.started):
            self._close(current)
            current = None
        if current is None:
            if client is None:
                client = (key[0], key[1]) if len(key) == 2 else ("", "")
            current = self._open[key] = _OpenSession(key, client, exchange.started)
        current.exchanges.append(exchange)
        current.last_seen = max(current.last_seen, exchange.finished)
        return current.id

    def close_idle(self, now: float) -> None:
        for session in [s for s in self._open.values() if self._expired(s, now)]:
            self._close(session)

    def close_all(self) -> None:
        for session in list(self._open.values()):
            self._close(session)

    def discard_all(self) -> None:
        """Forget every open session without closing it."""
        self._open.clear()

    def _expired(self, session: _OpenSession, now: float) -> bool:
        if now - session.last_seen > self.idle_gap:
            return True
        return self.max_session is not None and now - session.first_started >= self.max_session

    def _close(self, session: _OpenSession) -> None:
        del self._open[session.key]
        self.on_close(Closed(session.id, session.client, session.exchanges))


def new_session_id(started: float) -> str:
    """A unique session id that sorts by start time, e.g. ``20260101T120000-1a2b3c4d``."""
    return f"{datetime.fromtimestamp(started, tz=UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def build_session(key: ClientKey, exchanges: list[Exchange], session_id: str | None = None) -> Session:
    """A ``Session`` from exchanges of one client, ordered by request start."""
    ordered = sorted(exchanges, key=lambda e: e.started)
    t0 = ordered[0].started
    started_at = datetime.fromtimestamp(t0, tz=UTC)
    address, user_agent = key
    requests = [
        Request(
            offset_ms=round((e.started - t0) * 1000, 3),
            duration_ms=round(max(e.finished - e.started, 0.0) * 1000, 3),
            method=e.method, scheme=cast(Scheme, e.scheme), host=e.host, port=e.port, path=e.path,
            http_version=e.http_version, headers=e.headers, body=_body(e.body), response=Response(
                status=e.response.status, reason=e.response.reason, headers=e.response.headers,
                duration_ms=e.response.duration_ms, body=_body(e.response.body)),
        )
        for e in ordered
    ]
    agent = user_agent.split(" ", 1)[0] or "unknown client"
    return Session(
        id=session_id or new_session_id(t0),
        name=f"{agent} from {address}",
        client=ClientInfo(address=address, user_agent=user_agent or None),
        started_at=started_at,
        requests=requests,
    )


def _body(body: BodyData | None) -> Body | None:
    if body is None:
        return None
    return Body(encoding=body.encoding, data=body.data, content_type=body.content_type, size=body.size,
                truncated=body.truncated)
