"""Where each recorded request may go: only to ``--host`` and the hosts mapped explicitly.

``--host`` stands for the recording's primary host (the one most requests went to); any
other recorded host must be mapped with ``--map-host ORIGINAL=URL``, else its requests
are skipped and counted, never sent. Also: which flows cannot be replayed faithfully.
"""

from __future__ import annotations

from collections import Counter

from traffic_replay.errors import ConfigError
from traffic_replay.format import Request, Session


def host_key(request: Request) -> str:
    return f"{request.host}:{request.port}"


def primary_host(sessions: list[Session]) -> str | None:
    counts = Counter(host_key(r) for s in sessions for r in s.requests)
    return counts.most_common(1)[0][0] if counts else None


def parse_host_maps(specs: list[str]) -> dict[str, str]:
    """``["api.example.com=http://127.0.0.1:9000"]`` → {original: target URL}."""
    maps: dict[str, str] = {}
    for spec in specs:
        original, sep, url = spec.partition("=")
        if not sep or not original or not url.startswith(("http://", "https://")):
            raise ConfigError(f"--map-host '{spec}': expected ORIGINAL_HOST[:PORT]=http(s)://HOST[:PORT]")
        maps[original.strip().lower()] = url.rstrip("/")
    return maps


class HostMap:
    """Resolves a recorded request to the base URL it is sent to, or None (skipped)."""

    def __init__(self, host: str, primary: str | None, maps: dict[str, str]) -> None:
        self.host = host
        self.primary = primary
        self.maps = maps

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
