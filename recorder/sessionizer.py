"""Group finished exchanges into user sessions, and close them after an idle gap.

Pure Python, no mitmproxy: the addon feeds it ``Exchange`` tuples built from flows,
tests can feed it directly. A session is closed (handed to ``on_close``) when its
client has been silent for ``idle_gap`` seconds, or when recording stops.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from traffic_replay.format import Body, ClientInfo, Header, Request, Response, Session

ClientKey = tuple[str, str]
"""(client address, User-Agent): one real client, the default session key."""


class Exchange(NamedTuple):
    """One finished request/response, timestamps in epoch seconds."""

    started: float
    request_end: float
    finished: float
    method: str
    scheme: str
    host: str
    port: int
    path: str
    http_version: str
    headers: list[Header]
    body: Body | None
    response: Response


class _OpenSession:
    __slots__ = ("key", "exchanges", "last_seen")

    def __init__(self, key: ClientKey) -> None:
        self.key = key
        self.exchanges: list[Exchange] = []
        self.last_seen = 0.0


class Sessionizer:
    """Holds the open sessions, one per client key."""

    def __init__(self, idle_gap: float, on_close: Callable[[Session], None]) -> None:
        self.idle_gap = idle_gap
        self.on_close = on_close
        self._open: dict[ClientKey, _OpenSession] = {}

    @property
    def open_count(self) -> int:
        return len(self._open)

    def add(self, key: ClientKey, exchange: Exchange) -> None:
        current = self._open.get(key)
        if current is not None and exchange.started - current.last_seen > self.idle_gap:
            self._close(current)
            current = None
        if current is None:
            current = self._open[key] = _OpenSession(key)
        current.exchanges.append(exchange)
        current.last_seen = max(current.last_seen, exchange.finished)

    def close_idle(self, now: float) -> None:
        for session in [s for s in self._open.values() if now - s.last_seen > self.idle_gap]:
            self._close(session)

    def close_all(self) -> None:
        for session in list(self._open.values()):
            self._close(session)

    def _close(self, session: _OpenSession) -> None:
        del self._open[session.key]
        self.on_close(build_session(session.key, session.exchanges))


def build_session(key: ClientKey, exchanges: list[Exchange]) -> Session:
    """A ``Session`` from exchanges of one client, ordered by request start."""
    ordered = sorted(exchanges, key=lambda e: e.started)
    t0 = ordered[0].started
    started_at = datetime.fromtimestamp(t0, tz=UTC)
    address, user_agent = key
    requests = [
        Request(
            offset_ms=round((e.started - t0) * 1000, 3),
            duration_ms=round(max(e.finished - e.started, 0.0) * 1000, 3),
            method=e.method, scheme=e.scheme, host=e.host, port=e.port, path=e.path,
            http_version=e.http_version, headers=e.headers, body=e.body, response=e.response,
        )
        for e in ordered
    ]
    agent = user_agent.split(" ", 1)[0] or "unknown client"
    return Session(
        id=f"{started_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}",
        name=f"{agent} from {address}",
        client=ClientInfo(address=address, user_agent=user_agent or None),
        started_at=started_at,
        requests=requests,
    )
