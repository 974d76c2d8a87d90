"""A finished mitmproxy flow as the exchange a session keeps: redacted, response body capped.

The one place where a flow becomes recording data, for live recording (``recorder.addon``)
and for flows read back from a ``mitmdump -w`` file alike.
"""

from __future__ import annotations

from mitmproxy import http

from recorder.redaction import Redactor
from recorder.sessionizer import Exchange
from traffic_replay.format import Body, Header, Response

__all__ = ["flow_exchange"]


def _headers(headers: http.Headers) -> list[Header]:
    # fields keeps duplicates and order, which .items() would fold.
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers.fields]


def flow_exchange(flow: http.HTTPFlow, body_cap: int, redactor: Redactor | None = None) -> Exchange:
    """The exchange recorded for a finished flow (it must have a response), redacted if asked."""
    req, resp = flow.request, flow.response
    assert resp is not None
    raw = req.raw_content or b""
    # Response bodies are kept decoded (gzip removed) because correlation reads them.
    content = resp.get_content(strict=False) or b""
    headers, path, response_headers = _headers(req.headers), req.path, _headers(resp.headers)
    if redactor is not None:
        headers, path = redactor.header_list(headers), redactor.path(path)
        response_headers = redactor.header_list(response_headers)
        content = redactor.body(content, resp.headers.get("content-type"))
        if raw:
            raw, headers = _redacted_request_body(req, raw, headers, redactor)
    request_end = req.timestamp_end or req.timestamp_start
    finished = resp.timestamp_end or resp.timestamp_start
    return Exchange(
        started=req.timestamp_start,
        request_end=request_end,
        finished=finished,
        method=req.method.upper(),
        scheme=req.scheme,
        host=req.host,
        port=req.port,
        path=path,
        http_version=req.http_version,
        headers=headers,
        body=Body.from_bytes(raw, req.headers.get("content-type")) if raw else None,
        response=Response(
            status=resp.status_code,
            reason=resp.reason,
            headers=response_headers,
            duration_ms=round(max(finished - request_end, 0.0) * 1000, 3),
            body=Body.from_bytes(content, resp.headers.get("content-type"), cap=body_cap) if content else None,
        ),
    )


def _redacted_request_body(req: http.Request, raw: bytes, headers: list[Header],
                            redactor: Redactor) -> tuple[bytes, list[Header]]:
    ctype = req.headers.get("content-type")
    if "content-encoding" not in req.headers:
        return redactor.body(raw, ctype), headers
    plain = req.get_content(strict=False) or b""
    redacted = redactor.body(plain, ctype)
    if redacted is plain:
        return raw, headers
    # A compressed body can only be redacted decoded; kept so, its headers must not say otherwise.
    return redacted, [h for h in headers if h[0].lower() != "content-encoding"]
