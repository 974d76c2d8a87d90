"""What the recorder holds per exchange: plain tuples, turned into the format's models only at the edge.

Pure Python, no mitmproxy. The live response hook, the crash journal and the importers
all carry an ``Exchange`` of plain values (``BodyData``, ``ResponseData``: the fields of
``traffic_replay.format``'s ``Body`` and ``Response``, under the same names), so that a
flow costs no model validation on its way into the journal. A session file is written
from them line by line (``request_line``): the layout is ``dump_session``'s, one request
per line, and a session of a million requests is never one object tree in memory.

``validated`` is the one place where an exchange meets the format's models (keyword
constructors): the journal's recovery calls it per line, so that a damaged line is
counted rather than written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from traffic_replay.format import Body, Header, Request, Response, Session, dump_session

__all__ = ["BodyData", "Exchange", "ResponseData", "body_data", "exchange_from_plain", "head_bytes",
           "request_line", "validated"]

# The content types kept as readable text; the same rule as ``Body.from_bytes`` (tests/test_records.py holds
# the two together): anything else, or text that is not valid UTF-8, goes base64.
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "+json", "+xml", "/xml",
               "application/javascript", "application/graphql")


class BodyData(NamedTuple):
    """A ``Body``'s fields: UTF-8 text as is, anything else base64."""

    encoding: str
    data: str
    content_type: str | None
    size: int
    truncated: bool

    def to_bytes(self) -> bytes:
        return self.data.encode("utf-8") if self.encoding == "text" else base64.b64decode(self.data)


class ResponseData(NamedTuple):
    """A ``Response``'s fields."""

    status: int
    reason: str
    headers: list[Header]
    duration_ms: float
    body: BodyData | None


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
    body: BodyData | None
    response: ResponseData


def body_data(content: bytes, content_type: str | None, cap: int | None = None) -> BodyData:
    """What ``Body.from_bytes`` makes of ``content``, as plain fields."""
    size = len(content)
    truncated = cap is not None and size > cap
    kept = content[:cap] if truncated else content
    ctype = (content_type or "").lower()
    if not ctype or any(t in ctype for t in _TEXT_TYPES):
        try:
            return BodyData("text", kept.decode("utf-8"), content_type, size, truncated)
        except UnicodeDecodeError:
            pass  # a cap can cut a multi-byte character, or the label lies: fall back to base64
    return BodyData("base64", base64.b64encode(kept).decode("ascii"), content_type, size, truncated)


def _body_dict(body: BodyData | None) -> dict[str, Any] | None:
    return None if body is None else body._asdict()


def plain_dict(exchange: Exchange) -> dict[str, Any]:
    """The exchange as JSON-ready dicts (the crash journal's form)."""
    response = exchange.response
    return {**exchange._asdict(), "body": _body_dict(exchange.body),
            "response": {**response._asdict(), "body": _body_dict(response.body)}}


def exchange_from_plain(data: dict[str, Any]) -> Exchange:
    """``plain_dict`` read back; a missing or unknown field is a ``TypeError``."""
    body, response = data["body"], dict(data["response"])
    answer = response["body"]
    response["headers"] = [tuple(h) for h in response["headers"]]
    response["body"] = None if answer is None else BodyData(**answer)
    return Exchange(**{**data, "headers": [tuple(h) for h in data["headers"]],
                       "body": None if body is None else BodyData(**body),
                       "response": ResponseData(**response)})


def _request_fields(exchange: Exchange, t0: float) -> dict[str, Any]:
    # The field order of ``Request``: the same bytes as ``dump_session``'s lines.
    response = exchange.response
    return {
        "offset_ms": round((exchange.started - t0) * 1000, 3),
        "duration_ms": round(max(exchange.finished - exchange.started, 0.0) * 1000, 3),
        "method": exchange.method, "scheme": exchange.scheme, "host": exchange.host, "port": exchange.port,
        "path": exchange.path, "http_version": exchange.http_version, "headers": exchange.headers,
        "body": _body_dict(exchange.body),
        "response": {"status": response.status, "reason": response.reason, "headers": response.headers,
                     "duration_ms": response.duration_ms, "body": _body_dict(response.body)},
    }


def request_line(exchange: Exchange, t0: float) -> bytes:
    """One request of a session file (``t0``: the session's start), as ``dump_session`` writes it."""
    return orjson.dumps(_request_fields(exchange, t0))


_NO_REQUESTS = b',"requests":[]}\n'


def head_bytes(session: Session) -> bytes:
    """A session file up to its first request: ``dump_session`` of ``session`` (which has none), left open."""
    whole = dump_session(session)
    assert whole.endswith(_NO_REQUESTS) and not session.requests
    return whole[: -len(_NO_REQUESTS)] + b',"requests":['


def file_bytes(head: bytes, lines: Iterable[bytes]) -> Iterable[bytes]:
    """The pieces of a whole session file: ``head_bytes``, then the request lines as ``dump_session`` joins them."""
    yield head
    first = True
    for line in lines:
        yield (b"\n" if first else b",\n") + line
        first = False
    yield b"]}\n" if first else b"\n]}\n"


def validated(exchange: Exchange) -> Exchange:
    """``exchange`` if the format's models accept it as a request; their ``ValueError`` if not."""
    response = exchange.response
    Request(**{**_request_fields(exchange, exchange.started),
               "body": None if exchange.body is None else Body(**exchange.body._asdict()),
               "response": Response(**{**response._asdict(),
                                       "body": None if response.body is None else Body(**response.body._asdict())})})
    return exchange
