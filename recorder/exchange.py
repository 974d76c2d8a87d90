"""A finished mitmproxy flow as the plain data the pipeline records (``recorder.pipeline.Captured``).

The one place where a flow becomes recording data, for live recording (``recorder.addon``)
and for flows read back from a ``mitmdump -w`` file (``recorder.importer``) alike; and
the one place that says why a flow cannot be recorded at all (a WebSocket, a failure).
"""

from __future__ import annotations

from urllib.parse import quote

from mitmproxy import http

from recorder.filters import HOST_NOT_ALLOWED, FlowFilter
from recorder.pipeline import Captured
from traffic_replay.format import Header

__all__ = ["CLIENT_GONE", "CLIENT_LEFT", "FAILED", "NON_HTTP", "NO_ANSWER", "WEBSOCKET", "captured", "failure_reason"]

# Reasons a flow is not recorded, besides the filters' own.
WEBSOCKET = "websocket"
FAILED = "failed"
NON_HTTP = "non-http"
CLIENT_GONE = "client disconnected mid-request"
CLIENT_LEFT = "client disconnected before its answer"
NO_ANSWER = "no answer from upstream"


def _headers(headers: http.Headers) -> list[Header]:
    # fields keeps duplicates and order, which .items() would fold.
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers.fields]


_ASCII = "".join(map(chr, range(0x21, 0x7F)))


def _path(raw: bytes) -> str:
    """The path as text a session file can hold: mitmproxy's ``path`` keeps bytes that are not
    UTF-8 as lone surrogates, which no JSON can hold. Those are kept as their percent-escapes,
    which a server decodes to the same bytes; the rest as sent."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return quote(raw, safe=_ASCII)
    # A space or a control character would split the request line it is replayed in: escaped as well.
    return text if text.isprintable() and " " not in text else quote(raw, safe=_ASCII)


def _named(headers: list[Header], wanted: tuple[str, ...]) -> dict[str, str]:
    """The ``wanted`` (lower-case) headers of ``headers``, each as mitmproxy's ``Headers.get`` gives
    it (repeated fields joined with ", "): one pass over the decoded pairs, where each ``get`` on
    mitmproxy's headers walks and decodes every field again."""
    found: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in wanted:
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


_REQUEST_NAMES = ("user-agent", "content-type", "content-encoding")
_RESPONSE_NAMES = ("content-type", "content-encoding")


def captured(flow: http.HTTPFlow, with_url: bool = True) -> Captured:
    """What a finished flow (it must have a response) sent and got; ``with_url`` for ``--exclude`` filters."""
    req, resp = flow.request, flow.response
    assert resp is not None
    raw = req.raw_content or b""
    request_end = req.timestamp_end or req.timestamp_start
    finished = resp.timestamp_end or resp.timestamp_start
    headers, response_headers = _headers(req.headers), _headers(resp.headers)
    sent, got = _named(headers, _REQUEST_NAMES), _named(response_headers, _RESPONSE_NAMES)
    return Captured(
        (flow.client_conn.peername[0], sent.get("user-agent", "")),
        req.timestamp_start, request_end, finished, req.method.upper(), req.scheme, req.host, req.port,
        _path(req.data.path),
        req.url if with_url else "", req.http_version, headers, raw, sent.get("content-type"),
        resp.status_code, resp.data.reason.decode("utf-8", "replace"), response_headers,
        # Response bodies are kept decoded (gzip removed) because correlation reads them.
        (resp.get_content(strict=False) if "content-encoding" in got else resp.raw_content) or b"",
        got.get("content-type"),
        round(max(finished - request_end, 0.0) * 1000, 3),
        (req.get_content(strict=False) or b"") if raw and "content-encoding" in sent else None,
    )


def failure_reason(flow: http.HTTPFlow, flow_filter: FlowFilter) -> str | None:
    """Why a flow that ended in ``error`` is not recorded; ``None`` if it was (or will be) counted already."""
    # A WebSocket was counted at its handshake; a flow that got its whole response was recorded.
    if flow.websocket is not None or (flow.response is not None and flow.response.timestamp_end is not None):
        return None
    # A failure on a host we would not have recorded anyway is no failure of the recording.
    allowed = not flow_filter.allow_hosts or flow_filter.host_allowed(flow.request.host, flow.request.port)
    if not allowed:
        return HOST_NOT_ALLOWED
    # What went wrong, in the summary's words: the user must tell a flaky client from a dead upstream.
    if flow.request.timestamp_end is None:
        return CLIENT_GONE
    if flow.error is not None and flow.error.msg.startswith("Client disconnected"):  # mitmproxy's own words
        return CLIENT_LEFT
    # The upstream refused, closed or broke the connection: its client got mitmproxy's 502, which says why.
    return NO_ANSWER if flow.response is None else FAILED
