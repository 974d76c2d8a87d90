"""Where each recorded request may go: only to ``--host`` and the hosts mapped explicitly.

``--host`` stands for the recording's primary host (the one most requests went to); any
other recorded host must be mapped with ``--map-host ORIGINAL=URL``, else its requests
are skipped and counted, never sent. Also: which flows cannot be replayed faithfully.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from traffic_replay.format import Request, Session
from traffic_replay.specs import HostMapping


def host_key(request: Request) -> str:
    return f"{request.host}:{request.port}"


def primary_host(sessions: list[Session]) -> str | None:
    counts = Counter(host_key(r) for s in sessions for r in s.requests)
    return counts.most_common(1)[0][0] if counts else None


class HostMap:
    """Resolves a recorded request to the base URL it is sent to, or None (skipped)."""

    def __init__(self, host: str, primary: str | None, maps: Sequence[HostMapping] = ()) -> None:
        self.host = host
        self.primary = primary
        self.maps = {m.original: m.url for m in maps}

    def base_for(self, request: Request) -> str | None:
        key = host_key(request).lower()
        if key in self.maps:
            return self.maps[key]
        if request.host.lower() in self.maps:
            return self.maps[request.host.lower()]
        if key == self.primary:
            return self.host
        return None


def unreplayable(request: Request) -> str | None:
    """Why this flow cannot be replayed faithfully over HTTP/1.1, or None."""
    headers = {name.lower(): value.lower() for name, value in request.headers}
    response = request.response
    if headers.get("upgrade") == "websocket" or (response is not None and response.status == 101):
        return "websocket"
    if request.method == "CONNECT":
        return "CONNECT tunnel"
    if "application/grpc" in headers.get("content-type", ""):
        return "gRPC (HTTP/2 only)"
    if response is not None:
        ctype = next((v.lower() for n, v in response.headers if n.lower() == "content-type"), "")
        if "text/event-stream" in ctype:
            return "streaming (server-sent events)"
    return None
