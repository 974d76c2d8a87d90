"""What the recorder holds per exchange: plain tuples, turned into the format's models only at the edge.

Pure Python, no mitmproxy. The live response hook, the crash journal and the importers
all carry an ``Exchange`` of plain values (``BodyData``, ``ResponseData``: the fields of
``traffic_replay.format``'s ``Body`` and ``Response``, under the same names), so that a
flow costs no model validation on its way into the journal. A session file is written
from them line by line (``request_line``): the layout is ``dump_session``'s, one request
per line, and a session of a million requests is never one object tree in memory.

``validated`` is the one place where an exchange meets the format's models
(``msgspec.convert``): the journal's recovery calls it per line, so that a damaged line
is counted rather than written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import msgspec
import orjson

from traffic_replay.format import Header, Request, Session, describe_error, dump_session
from traffic_replay.sharing import unsendable_header

__all__ = ["BodyData", "Exchange", "ResponseData", "body_data", "exchange_from_fields", "file_bytes", "head_bytes",
           "request_fields", "request_line", "spliced", "timing", "validated"]

# The content types kept as readable text; the same rule as ``Body.from_bytes`` (tests/test_records.py holds
# the two together): anything else, or text that is not valid UTF-8, goes base64.
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "+json", "+xml", "/xml",
               "application/javascript", "application/graphql", "multipart/form-data")


class BodyData(NamedTuple):
    """A ``Body``'s fields: UTF-8 text as is, anything else base64."""

    encoding: Literal["text", "base64"]
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


_textual: dict[str | None, bool] = {}
"""Whether a content type is kept as text, per content type seen (a recording sees few)."""


def _is_textual(content_type: str | None) -> bool:
    known = _textual.get(content_type)
    if known is None:
        ctype = (content_type or "").lower()
        known = not ctype or any(t in ctype for t in _TEXT_TYPES)
        if len(_textual) < 1024:
            _textual[content_type] = known
    return known


def body_data(content: bytes, content_type: str | None, cap: int | None = None) -> BodyData:
    """What ``Body.from_bytes`` makes of ``content``, as plain fields."""
    size = len(content)
    truncated = cap is not None and size > cap
    kept = content[:cap] if truncated else content
    if _is_textual(content_type):
        try:
            return BodyData("text", kept.decode("utf-8"), content_type, size, truncated)
        except UnicodeDecodeError:
            pass  # a cap can cut a multi-byte character, or the label lies: fall back to base64
    return BodyData("base64", base64.b64encode(kept).decode("ascii"), content_type, size, truncated)


def _body_dict(body: BodyData | None) -> dict[str, Any] | None:
    if body is None:
        return None
    return {"encoding": body.encoding, "data": body.data, "content_type": body.content_type, "size": body.size,
            "truncated": body.truncated}


def request_fields(exchange: Exchange) -> dict[str, Any]:
    """A session file's request, without its timing (``offset_ms``, ``duration_ms``): ``Request``'s field order.

    The crash journal keeps an exchange so, serialized once: the request line of its
    session file is then these bytes behind the timing (``spliced``), never parsed again.
    """
    response = exchange.response
    return {
        "method": exchange.method, "scheme": exchange.scheme, "host": exchange.host, "port": exchange.port,
        "path": exchange.path, "http_version": exchange.http_version, "headers": exchange.headers,
        "body": _body_dict(exchange.body),
        "response": {"status": response.status, "reason": response.reason, "headers": response.headers,
                     "duration_ms": response.duration_ms, "body": _body_dict(response.body)},
    }


def exchange_from_fields(timing: list[float], fields: dict[str, Any]) -> Exchange:
    """``request_fields`` read back, with the exchange's (started, request_end, finished); a bad field is a
    ``TypeError`` or ``KeyError``."""
    body, response = fields["body"], dict(fields["response"])
    answer = response["body"]
    response["headers"] = [tuple(h) for h in response["headers"]]
    response["body"] = None if answer is None else BodyData(**answer)
    started, request_end, finished = timing
    return Exchange(started, request_end, finished, **{
        **fields, "headers": [tuple(h) for h in fields["headers"]],
        "body": None if body is None else BodyData(**body), "response": ResponseData(**response)})


def timing(started: float, finished: float, t0: float) -> tuple[float, float]:
    """(offset_ms, duration_ms) of a request in a session that started at ``t0``."""
    return round((started - t0) * 1000, 3), round(max(finished - started, 0.0) * 1000, 3)


def spliced(offset_ms: float, duration_ms: float, fields: bytes) -> bytes:
    """A request line from its timing and its serialized ``request_fields``."""
    return (b'{"offset_ms":' + orjson.dumps(offset_ms) + b',"duration_ms":' + orjson.dumps(duration_ms)
            + b"," + fields[1:])


def request_line(exchange: Exchange, t0: float) -> bytes:
    """One request of a session file (``t0``: the session's start), as ``dump_session`` writes it."""
    return spliced(*timing(exchange.started, exchange.finished, t0), orjson.dumps(request_fields(exchange)))


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
    """``exchange`` if the format accepts it as a request; ``ValueError`` naming the field if not.

    The format's structs do not check types when built by keyword, so the fields go
    through ``msgspec.convert``: the same checks as a session file's decoding. Text that
    JSON cannot hold (a lone surrogate, from bytes that were not UTF-8) is refused too.
    """
    offset_ms, duration_ms = timing(exchange.started, exchange.finished, exchange.started)
    fields = {"offset_ms": offset_ms, "duration_ms": duration_ms, **request_fields(exchange)}
    try:
        msgspec.convert(fields, Request)
    except msgspec.ValidationError as e:
        raise ValueError(describe_error(e)) from e
    if (where := _unencodable(fields, "")) is not None:
        raise ValueError(f"field '{where}': not valid Unicode (bytes that are not UTF-8)")
    # What a session file refuses at load because it would split the request it is sent in.
    for n, (name, value) in enumerate(fields["headers"]):
        if (what := unsendable_header(name, value)) is not None:
            raise ValueError(f"field 'headers.{n}': the header's {what}")
    return exchange


def _unencodable(value: object, path: str) -> str | None:
    """The path of the first string in ``value`` that is not valid UTF-8 once encoded, if any."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        if (found := _unencodable(item, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None
