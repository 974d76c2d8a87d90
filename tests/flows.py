"""mitmproxy flows for the recorder's hook tests: ``tflow`` with the timing a recorder reads."""

from __future__ import annotations

from mitmproxy.test import tflow


def timed_flow(path: bytes, start: float, agent: str | None = None, body: bytes = b"") -> tflow.HTTPFlow:
    """A finished flow for ``path`` that started at ``start`` (epoch seconds) and took 3 ms."""
    flow = tflow.tflow(resp=True)
    flow.request.path = path
    if agent is not None:
        flow.request.headers["User-Agent"] = agent
    if body:
        flow.request.content = body
    flow.request.timestamp_start, flow.request.timestamp_end = start, start + 0.001
    assert flow.response is not None
    flow.response.timestamp_start, flow.response.timestamp_end = start + 0.002, start + 0.003
    return flow
