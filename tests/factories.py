"""Sessions for tests, built with the real format models (as mitmproxy ships ``tflow``)."""

from __future__ import annotations

from datetime import UTC, datetime

from traffic_replay.format import Body, Request, Response, Session, replace


def make_request(path: str = "/items/1", method: str = "GET", status: int = 200, offset_ms: float = 0.0,
                 duration_ms: float = 5.0, body: bytes | None = None, content_type: str | None = None,
                 headers: list[tuple[str, str]] | None = None, host: str = "127.0.0.1", port: int = 8000) -> Request:
    return Request(
        offset_ms=offset_ms, duration_ms=duration_ms, method=method, scheme="http", host=host, port=port, path=path,
        headers=headers if headers is not None else [("Host", f"{host}:{port}"), ("User-Agent", "test/1.0")],
        body=Body.from_bytes(body, content_type) if body is not None else None,
        response=Response(status=status, duration_ms=duration_ms / 2, headers=[("Content-Type", "text/plain")],
                          body=Body.from_bytes(b"ok", "text/plain")),
    )


def make_session(requests: list[Request] | None = None, id: str = "s1", name: str = "test session",
                 weight: float = 1.0) -> Session:
    return Session(id=id, name=name, weight=weight, started_at=datetime(2026, 1, 1, tzinfo=UTC),
                   requests=requests if requests is not None else [make_request()])


def answered(request: Request, body: str = "", content_type: str = "application/json",
             headers: list[tuple[str, str]] | None = None, status: int = 200) -> Request:
    """``request`` with the recorded response replaced."""
    response = Response(status=status, duration_ms=1, headers=[("Content-Type", content_type), *(headers or [])],
                        body=Body.from_bytes(body.encode(), content_type) if body else None)
    return replace(request, response=response)
