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
import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import urlencode, urlsplit

import ijson

from recorder.filters import FlowFilter
from recorder.harparse import PARSE_ERRORS, ChildFailed, Parsed, ParseError, Reader, child_items, first_line
from recorder.pipeline import Captured, Pipeline
from recorder.records import Exchange
from recorder.redaction import Redactor
from recorder.sessionkeys import ClientKey
from traffic_replay.errors import RecordingError
from traffic_replay.format import METHOD_PATTERN, Header

Grouping = Literal["page", "file"]
T = TypeVar("T")

NOT_HTTP = "not an http(s) URL"
NO_RESPONSE = "no response (status 0: blocked, cancelled or failed)"
WEBSOCKET = "WebSocket upgrade (not replayable as HTTP)"
INVALID = "not a valid HAR entry"
BAD_METHOD = "not an HTTP method"
_METHOD = re.compile(METHOD_PATTERN)


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


FORK_FROM = 8 << 20
"""A HAR at least this big is parsed in a child process (``recorder.harparse``); a smaller one here, where
the fork would cost more than it saves."""


def _entry(entry: Any) -> Any:
    return entry


@dataclass
class HarFile:
    """A HAR streamed entry by entry (ijson): ``entries()`` yields each; then ``digest``, ``pages``, ``count``.

    Never the whole file as objects: one entry at a time, and the pages (small). Pages
    are read before the entries when they come first in the file (the usual order: a
    look at the file's head); when they come after, ``pages`` is filled by a second
    pass once the entries are done, and only if ``with_pages`` asks for them.
    """

    path: Path
    with_pages: bool = True
    digest: str = ""
    """sha256 of the file's bytes: with a page it makes a session id that importing again rewrites."""
    pages: dict[str, str] = field(default_factory=dict)
    """Title of each page id."""
    count: int = 0
    fork_from: int = FORK_FROM
    """Files of this many bytes or more are parsed in a child process."""

    def entries(self, convert: Callable[[Any], Any] = _entry) -> Generator[Any, None, None]:
        """Each entry through ``convert`` (made where the entry is parsed: in the child for a big file)."""
        pages_after = self.with_pages and not self._read(self._pages_ahead)
        with self._open() as fh:
            self.digest = yield from self._stream(fh, convert)
        if self.count == 0 and not self._read(self._has_entries):
            raise HarError(f"{self.path}: not a HAR file: no log.entries list")
        if pages_after:
            self._read(lambda fh: self._add_pages(ijson.items(Reader(fh), "log.pages.item", use_float=True)))

    def _stream(self, fh: BinaryIO, convert: Callable[[Any], Any]) -> Generator[Any, None, str]:
        """The entries converted, counted; returns the file's digest."""
        try:
            if os.fstat(fh.fileno()).st_size < self.fork_from:
                reader = Reader(fh)
                for entry in ijson.items(reader, "log.entries.item", use_float=True):
                    self.count += 1
                    yield convert(entry)
                return reader.digest()
            parsed = Parsed()
            with contextlib.closing(child_items(fh, "log.entries.item", parsed, convert)) as items:
                for item in items:
                    self.count += 1
                    yield item
            return parsed.digest
        except (*PARSE_ERRORS, ParseError) as e:
            raise self._invalid(e) from e
        except ChildFailed as e:
            raise HarError(f"{self.path}: {e}") from e

    def _open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as e:
            raise HarError(f"{self.path}: {e.strerror or e}") from e

    def _read(self, parse: Callable[[BinaryIO], T]) -> T:
        with self._open() as fh:
            try:
                return parse(fh)
            except PARSE_ERRORS as e:
                raise self._invalid(e) from e

    def _invalid(self, error: Exception) -> HarError:
        return HarError(f"{self.path}: not a HAR file: not valid JSON ({first_line(error)})")

    def _pages_ahead(self, fh: BinaryIO) -> bool:
        """Read ``log.pages`` if it comes before ``log.entries``; False if the entries come first."""
        ahead = True

        def head() -> Iterator[tuple[str, str, Any]]:
            nonlocal ahead
            for prefix, event, value in ijson.parse(Reader(fh), use_float=True):
                if prefix == "log.entries" and event == "start_array":
                    ahead = False
                    return
                yield prefix, event, value
                if prefix == "log.pages" and event == "end_array":
                    return

        self._add_pages(ijson.items(head(), "log.pages.item"))
        return ahead

    def _add_pages(self, pages: Iterable[Any]) -> None:
        self.pages.update((str(p.get("id")), _page_title(p)) for p in pages if isinstance(p, dict))

    @staticmethod
    def _has_entries(fh: BinaryIO) -> bool:
        return any(prefix == "log.entries" and event == "start_array"
                   for prefix, event, _ in ijson.parse(Reader(fh), use_float=True))


def group_id(digest: str, key: str, started: float) -> str:
    stamp = datetime.fromtimestamp(started, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-har-{hashlib.sha256(f'{digest}/{key}'.encode()).hexdigest()[:8]}"


def page_key(entry: Any, per: Grouping) -> str:
    """The group an entry belongs to: its page (``per="page"``), or ``""`` for the whole file."""
    page = entry.get("pageref") if per == "page" and isinstance(entry, dict) else None
    return str(page) if page is not None else ""


def entry_url(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    return str(request.get("url", "?")) if isinstance(request, dict) else "?"


def load_har(path: Path, body_cap: int, per: Grouping = "page", flow_filter: FlowFilter | None = None,
             redactor: Redactor | None = None) -> HarImport:
    """The whole HAR in memory, grouped (for tests and small files: ``replay import`` streams it instead)."""
    pipeline = Pipeline()
    pipeline.body_cap, pipeline.redactor = body_cap, redactor
    if flow_filter is not None:
        pipeline.filter = flow_filter
    har = HarFile(path, with_pages=per == "page")
    found: dict[str, tuple[float, list[Exchange]]] = {}
    skipped: list[tuple[int, str, str]] = []
    for index, entry in enumerate(har.entries()):
        captured = entry_captured(entry)
        reason = captured if isinstance(captured, str) else pipeline.filter.skip_reason(
            captured.host, captured.port, captured.url, captured.path, captured.response_type)
        if reason is not None or isinstance(captured, str):
            skipped.append((index, entry_url(entry), reason or INVALID))
            continue
        found.setdefault(page_key(entry, per), (captured.started, []))[1].append(pipeline.exchange(captured))
    groups = [HarGroup(group_id(har.digest, key, started), (har.pages.get(key) if key else None) or path.stem,
                       exchanges) for key, (started, exchanges) in found.items()]
    return HarImport(groups, har.count, skipped)


def _page_title(page: dict[str, Any] | None) -> str:
    if not page:
        return ""
    return str(page.get("title") or page.get("id") or "")


def entry_captured(entry: Any, client: ClientKey = ("", "")) -> Captured | str:
    """One HAR entry as what was sent and got, or the reason it is skipped (``INVALID`` if it is no entry).

    ``client`` is the client key it is recorded under (its User-Agent is the entry's own).
    """
    try:
        return _captured(entry, client)
    except (KeyError, TypeError, ValueError, AttributeError):
        return INVALID


def _captured(entry: dict[str, Any], client: ClientKey) -> Captured | str:
    request, response = entry["request"], entry.get("response") or {}
    parts = urlsplit(request["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return NOT_HTTP
    method = str(request["method"]).upper()
    if not _METHOD.match(method):
        return BAD_METHOD
    status = int(response.get("status") or 0)
    if status == 101:
        return WEBSOCKET
    if not 100 <= status <= 599:
        return NO_RESPONSE
    started = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
    timings = entry.get("timings") or {}
    get = timings.get
    total = _ms(entry.get("time"))
    sending = _ms(get("blocked")) + _ms(get("dns")) + _ms(get("connect")) + _ms(get("send"))
    waiting = _ms(get("wait")) + _ms(get("receive"))
    request_end = started + min(sending, total) / 1000
    finished = started + max(total, sending + waiting) / 1000
    headers = _headers(request.get("headers"))
    response_headers = _headers(response.get("headers"))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    content = response.get("content") or {}
    response_type = content.get("mimeType") or _content_type(response_headers)
    request_type, request_body = _request_body(request.get("postData"), headers)
    agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    return Captured(
        (client[0], agent), started, request_end, finished, method, parts.scheme, host,
        port, path, f"{parts.scheme}://{parts.netloc}{path}", _http_version(request.get("httpVersion")), headers,
        request_body, request_type, status, str(response.get("statusText") or ""), response_headers,
        _response_body(content), response_type,
        round(waiting if waiting else max(finished - request_end, 0.0) * 1000, 3))


def _ms(value: Any) -> float:
    # HAR uses -1 for "does not apply".
    return float(value) if (type(value) is float or type(value) is int) and value > 0 else 0.0


def _headers(items: Iterable[dict[str, Any]] | None) -> list[Header]:
    return [(str(h["name"]), v if isinstance(v := h["value"], str) else str(v))
            for h in items or () if not str(h["name"]).startswith(":")]


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
