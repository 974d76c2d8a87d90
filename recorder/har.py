"""HAR files (browser and Playwright exports) into exchanges, grouped by page or by file.

Pure Python, no mitmproxy. Only HAR 1.2 fields are read, so that Chrome, Firefox and
Playwright exports all work (nothing requires Chrome's ``_resourceType`` and the like):
``startedDateTime`` and ``time`` give the timing (``timings`` splits the request from
the wait), ``postData`` the request body, ``content`` the response body (decoded when
``encoding`` is ``base64``). HTTP/2 pseudo-headers (``:authority``...) are dropped: the
recorder does not keep them either.

An entry that cannot become a replayable request is skipped with its reason: a URL
that is not http(s) (``data:``, ``blob:``, ``ws:``, extensions), no response (status 0:
blocked, cancelled or failed in the browser), a WebSocket upgrade (101), or an entry
that is not a valid HAR entry.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import orjson

from recorder.filters import FlowFilter
from recorder.redaction import Redactor
from recorder.sessionizer import Exchange
from traffic_replay.errors import RecordingError
from traffic_replay.format import Body, Header, Response

Grouping = Literal["page", "file"]

NOT_HTTP = "not an http(s) URL"
NO_RESPONSE = "no response (status 0: blocked, cancelled or failed)"
WEBSOCKET = "WebSocket upgrade (not replayable as HTTP)"
INVALID = "not a valid HAR entry"


class HarError(RecordingError):
    """A file that is not a HAR we can read."""


@dataclass
class HarGroup:
    """The exchanges of one HAR page (or of the whole file), in file order."""

    id: str
    """Stable: derived from the file's content and the page, so importing twice rewrites the same files."""
    title: str
    exchanges: list[Exchange] = field(default_factory=list)


@dataclass
class HarImport:
    groups: list[HarGroup]
    entries: int
    skipped: list[tuple[int, str, str]]
    """(entry index, URL, reason) of every entry not imported."""


def load_har(path: Path, body_cap: int, per: Grouping = "page", flow_filter: FlowFilter | None = None,
             redactor: Redactor | None = None) -> HarImport:
    """Read and convert ``path``; ``HarError`` names the file and what is wrong with it.

    ``flow_filter`` and ``redactor`` are the recorder's own, applied where it applies them.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HarError(f"{path}: {e.strerror or e}") from e
    try:
        document = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))  # some Windows tools write a BOM
    except orjson.JSONDecodeError as e:
        raise HarError(f"{path}: not a HAR file: not valid JSON ({e})") from e
    log = document.get("log") if isinstance(document, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise HarError(f"{path}: not a HAR file: no log.entries list")
    return convert(log, hashlib.sha256(raw).hexdigest(), path.stem, body_cap, per, flow_filter, redactor)


def convert(log: dict[str, Any], digest: str, name: str, body_cap: int, per: Grouping,
            flow_filter: FlowFilter | None = None, redactor: Redactor | None = None) -> HarImport:
    """The ``log`` object of a HAR into groups of exchanges; ``digest`` makes the ids stable."""
    pages = {p.get("id"): p for p in log.get("pages") or [] if isinstance(p, dict)}
    groups: dict[str, HarGroup] = {}
    skipped: list[tuple[int, str, str]] = []
    entries = log["entries"]
    for index, entry in enumerate(entries):
        url = entry.get("request", {}).get("url", "?") if isinstance(entry, dict) else "?"
        try:
            exchange = entry_exchange(entry, body_cap, flow_filter, redactor)
        except (KeyError, TypeError, ValueError, AttributeError):
            skipped.append((index, str(url), INVALID))
            continue
        if isinstance(exchange, str):
            skipped.append((index, str(url), exchange))
            continue
        page = entry.get("pageref") if per == "page" else None
        key = str(page) if page is not None else ""
        if key not in groups:
            title = _page_title(pages.get(page)) if page is not None else name
            groups[key] = HarGroup(_group_id(digest, key, exchange.started), title or name)
        groups[key].exchanges.append(exchange)
    return HarImport(list(groups.values()), len(entries), skipped)


def _page_title(page: dict[str, Any] | None) -> str:
    if not page:
        return ""
    return str(page.get("title") or page.get("id") or "")


def _group_id(digest: str, key: str, started: float) -> str:
    stamp = datetime.fromtimestamp(started, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-har-{hashlib.sha256(f'{digest}/{key}'.encode()).hexdigest()[:8]}"


def entry_exchange(entry: dict[str, Any], body_cap: int, flow_filter: FlowFilter | None = None,
                   redactor: Redactor | None = None) -> Exchange | str:
    """One HAR entry as an exchange, or the reason it is skipped (the filter's reasons included)."""
    request, response = entry["request"], entry.get("response") or {}
    parts = urlsplit(request["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return NOT_HTTP
    status = int(response.get("status") or 0)
    if status == 101:
        return WEBSOCKET
    if not 100 <= status <= 599:
        return NO_RESPONSE
    started = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
    timings = entry.get("timings") or {}
    total = _ms(entry.get("time"))
    sending = sum(_ms(timings.get(k)) for k in ("blocked", "dns", "connect", "send"))
    waiting = _ms(timings.get("wait")) + _ms(timings.get("receive"))
    request_end = started + min(sending, total) / 1000
    finished = started + max(total, sending + waiting) / 1000
    headers = _headers(request.get("headers"))
    response_headers = _headers(response.get("headers"))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    content = response.get("content") or {}
    response_type = content.get("mimeType") or _content_type(response_headers)
    if flow_filter is not None and flow_filter.active:
        url = f"{parts.scheme}://{parts.netloc}{path}"
        if (reason := flow_filter.skip_reason(host, port, url, path, response_type)) is not None:
            return reason
    request_type, request_body = _request_body(request.get("postData"), headers)
    response_body = _response_body(content)
    if redactor is not None:
        # Where and what the live recorder redacts (recorder.exchange.flow_exchange).
        headers, path = redactor.header_list(headers), redactor.path(path)
        response_headers = redactor.header_list(response_headers)
        request_body = redactor.body(request_body, request_type)
        response_body = redactor.body(response_body, response_type)
    return Exchange(
        started=started, request_end=request_end, finished=finished,
        method=str(request["method"]).upper(), scheme=parts.scheme, host=host, port=port, path=path,
        http_version=_http_version(request.get("httpVersion")), headers=headers,
        body=Body.from_bytes(request_body, request_type) if request_body else None,
        response=Response(
            status=status, reason=str(response.get("statusText") or ""), headers=response_headers,
            duration_ms=round(waiting if waiting else max(finished - request_end, 0.0) * 1000, 3),
            body=Body.from_bytes(response_body, response_type, cap=body_cap) if response_body else None,
        ),
    )


def _ms(value: Any) -> float:
    # HAR uses -1 for "does not apply".
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _headers(items: Iterable[dict[str, Any]] | None) -> list[Header]:
    return [(str(h["name"]), str(h["value"])) for h in items or () if not str(h["name"]).startswith(":")]


def _content_type(headers: list[Header]) -> str | None:
    return next((v for k, v in headers if k.lower() == "content-type"), None)


def _http_version(text: Any) -> str:
    version = str(text or "").strip().upper()
    if version in ("H2", "HTTP/2", "HTTP/2.0"):
        return "HTTP/2.0"
    if version in ("H3", "HTTP/3", "HTTP/3.0"):
        return "HTTP/3"
    return version if version.startswith("HTTP/") else "HTTP/1.1"


def _request_body(post: dict[str, Any] | None, headers: list[Header]) -> tuple[str | None, bytes]:
    """(content type, bytes) of a request's ``postData``."""
    if not post:
        return _content_type(headers), b""
    ctype = post.get("mimeType") or _content_type(headers)
    text = post.get("text")
    if text is not None:
        return ctype, base64.b64decode(text) if post.get("encoding") == "base64" else str(text).encode("utf-8")
    if post.get("params"):
        # Firefox may give only the parsed form fields of a form post.
        return ctype, urlencode([(p["name"], p.get("value", "")) for p in post["params"]]).encode("ascii")
    return ctype, b""


def _response_body(content: dict[str, Any]) -> bytes:
    # No text: exported without bodies (or as a file reference); the status and headers still count.
    text = content.get("text")
    if text is None:
        return b""
    return base64.b64decode(str(text)) if content.get("encoding") == "base64" else str(text).encode("utf-8")
