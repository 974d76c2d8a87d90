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
that is not a valid HAR entry: an ``Invalid`` saying what is wrong, by the field's path
(``no request.url``, ``response.status is "abc", not a number``). Every field read is
checked for its JSON type here, where the entry is parsed (in the child process for a big
file): what crosses to the importer is plain data or the reason, never an exception.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, TypeVar
from urllib.parse import urlencode, urlsplit

import ijson

from recorder.filters import FlowFilter
from recorder.harparse import CHUNK, PARSE_ERRORS, Parsed, Reader, child_items, first_line
from recorder.pipeline import Captured, Pipeline
from recorder.records import Exchange
from recorder.redaction import Redactor
from recorder.sessionkeys import ClientKey
from traffic_replay.errors import HarError, HarParserFailed, HarSyntaxError, InvalidEntry, RecordingError, one_line
from traffic_replay.format import METHOD_PATTERN, Header

Grouping = Literal["page", "file"]
T = TypeVar("T")

NOT_HTTP = "not an http(s) URL"
NO_RESPONSE = "no response (status 0: blocked, cancelled or failed)"
WEBSOCKET = "WebSocket upgrade (not replayable as HTTP)"
INVALID = "not a valid HAR entry"
BAD_METHOD = "not an HTTP method"
_METHOD = re.compile(METHOD_PATTERN)
_WHITESPACE = re.compile(r"\s+")


VERSIONS = ("1.1", "1.2")
"""The HAR versions this reads; another one is read as 1.2, with a warning."""


def open_regular(path: Path, error: type[RecordingError]) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; else ``error``, one line saying what it is.

    Opened without blocking and checked on the open file: a FIFO (or a path swapped for one) would
    wait for a writer forever, and a device (``/dev/zero``) never ends.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{path}: a symbolic link loop (too many levels of symbolic links)") from e
        if isinstance(e, FileNotFoundError):
            raise error(f"{path}: " + ("a symbolic link to a missing file" if path.is_symlink()
                                       else "no such file")) from e
        raise error(f"{path}: {e.strerror or e}") from e
    try:
        mode = os.fstat(fd).st_mode
        kind = None if stat.S_ISREG(mode) else (
            "a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
        if kind is not None:
            hint = " (save what it gives to a file, and import that)" if kind in ("a named pipe (FIFO)",
                                                                                  "a device") else ""
            raise error(f"{path}: {kind}, not a file{hint}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    """(entry number, URL, reason) of every entry not imported; entries are numbered from 1, as in ``entry 1: ...``."""
    invalid: list[tuple[int, str]] = field(default_factory=list)
    """(entry number, what is wrong) of every entry that is not a valid HAR entry."""


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
    version: Any = None
    """``log.version`` when it comes before the entries (as every exporter writes it)."""
    fork_from: int = FORK_FROM
    """Files of this many bytes or more are parsed in a child process."""

    def entries(self, convert: Callable[[Any], Any] = _entry) -> Generator[Any, None, None]:
        """Each entry through ``convert`` (made where the entry is parsed: in the child for a big file)."""
        pages_after = not self._read(self._pages_ahead) and self.with_pages
        with self._open() as fh:
            self.digest = yield from self._stream(fh, convert)
        if self.count == 0 and not self._read(self._has_entries):
            raise HarError(f"{self.path}: not a HAR file: no log.entries list")
        if pages_after:
            self._read(lambda fh: self._add_pages(ijson.items(Reader(fh), "log.pages.item", use_float=True,
                                                              buf_size=CHUNK)))

    def _stream(self, fh: BinaryIO, convert: Callable[[Any], Any]) -> Generator[Any, None, str]:
        """The entries converted, counted; returns the file's digest."""
        try:
            if os.fstat(fh.fileno()).st_size < self.fork_from:
                reader = Reader(fh)
                for entry in ijson.items(reader, "log.entries.item", use_float=True, buf_size=CHUNK):
                    self.count += 1
                    yield convert(entry)
                return reader.digest()
            parsed = Parsed()
            with contextlib.closing(child_items(fh, "log.entries.item", parsed, convert)) as items:
                for item in items:
                    self.count += 1
                    yield item
            return parsed.digest
        except (*PARSE_ERRORS, HarSyntaxError) as e:
            raise self._invalid(e) from e
        except HarParserFailed as e:
            raise HarError(f"{self.path}: {e}") from e

    def _open(self) -> BinaryIO:
        return open_regular(self.path, HarError)

    def _read(self, parse: Callable[[BinaryIO], T]) -> T:
        with self._open() as fh:
            try:
                return parse(fh)
            except PARSE_ERRORS as e:
                raise self._invalid(e) from e

    def version_warning(self) -> str | None:
        """What to say of a ``log.version`` that is not one of ``VERSIONS``."""
        if self.version is None or str(self.version) in VERSIONS:
            return None
        return (f"HAR version {_shown(self.version)} is not {' or '.join(VERSIONS)}: its entries are read as HAR "
                f"{VERSIONS[-1]}")

    def _invalid(self, error: Exception) -> HarError:
        return HarError(f"{self.path}: not a HAR file: not valid JSON ({first_line(error)})")

    def _pages_ahead(self, fh: BinaryIO) -> bool:
        """Read ``log.pages`` (and ``log.version``) if before ``log.entries``; False if the entries come first."""
        ahead = True

        def head() -> Iterator[tuple[str, str, Any]]:
            nonlocal ahead
            for prefix, event, value in ijson.parse(Reader(fh), use_float=True, buf_size=CHUNK):
                if prefix == "log.entries" and event == "start_array":
                    ahead = False
                    return
                if prefix == "log.version" and event in ("string", "number"):
                    self.version = value
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
                   for prefix, event, _ in ijson.parse(Reader(fh), use_float=True, buf_size=CHUNK))


def group_id(digest: str, key: str, started: float) -> str:
    stamp = datetime.fromtimestamp(started, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-har-{hashlib.sha256(f'{digest}/{key}'.encode()).hexdigest()[:8]}"


def page_key(entry: Any, per: Grouping) -> str:
    """The group an entry belongs to: its page (``per="page"``), or ``""`` for the whole file."""
    page = entry.get("pageref") if per == "page" and isinstance(entry, dict) else None
    return str(page) if page is not None else ""


def entry_url(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    url = request.get("url", "?") if isinstance(request, dict) else "?"
    return one_line(url[:200] if isinstance(url, str) else str(url)[:200])


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
    invalid: list[tuple[int, str]] = []
    for index, entry in enumerate(har.entries(), 1):
        captured = entry_captured(entry)
        if isinstance(captured, Invalid):
            skipped.append((index, entry_url(entry), INVALID))
            invalid.append((index, captured.what))
            continue
        reason = captured if isinstance(captured, str) else pipeline.filter.skip_reason(
            captured.host, captured.port, captured.url, captured.path, captured.response_type)
        if reason is not None or isinstance(captured, str):
            skipped.append((index, entry_url(entry), reason or INVALID))
            continue
        found.setdefault(page_key(entry, per), (captured.started, []))[1].append(pipeline.exchange(captured))
    groups = [HarGroup(group_id(har.digest, key, started), (har.pages.get(key) if key else None) or path.stem,
                       exchanges) for key, (started, exchanges) in found.items()]
    return HarImport(groups, har.count, skipped, invalid)


def _page_title(page: dict[str, Any] | None) -> str:
    if not page:
        return ""
    return str(page.get("title") or page.get("id") or "")


class Invalid(NamedTuple):
    """An entry that is not a valid HAR entry, and what is wrong with it, by field: ``no request.url``."""

    what: str


def entry_captured(entry: Any, client: ClientKey = ("", "")) -> Captured | str | Invalid:
    """One HAR entry as what was sent and got, the reason it is skipped, or ``Invalid`` if it is no valid entry.

    ``client`` is the client key it is recorded under (its User-Agent is the entry's own).
    """
    try:
        return _captured(entry, client)
    except InvalidEntry as e:
        return Invalid(str(e))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:  # a check missed below
        return Invalid(f"{INVALID} ({type(e).__name__}: {first_line(e)[:80]})")


def _shown(value: Any) -> str:
    """A value as a message shows it, on one line: JSON's own words, a long string cut."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return one_line(json.dumps(value if len(value) <= 60 else value[:57] + "...", ensure_ascii=False))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)[:40]


_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    dict: ((dict,), "an object"), list: ((list,), "a list"), str: ((str,), "text"),
    float: ((int, float), "a number"),
}


_EXACT: dict[type, frozenset[type]] = {dict: frozenset({dict}), list: frozenset({list}), str: frozenset({str}),
                                      float: frozenset({int, float})}
"""The types a value of each kind has in what ijson builds: one look-up on the way of a good value."""


def _get(parent: dict[str, Any], key: str, path: str, kind: type, required: bool = False) -> Any:
    """``parent[key]``, of ``kind`` (``float``: any number); ``None`` if absent (or null) and not ``required``."""
    value = parent.get(key)
    if type(value) in _EXACT[kind]:
        return value
    if key not in parent:
        if required:
            raise InvalidEntry(f"no {path}")
        return None
    if value is None and not required:
        return None
    types, name = _KINDS[kind]
    if not isinstance(value, types) or isinstance(value, bool):
        raise InvalidEntry(f"{path} is {_shown(value)}, not {name}")
    return value


def _timing(timings: dict[str, Any], name: str) -> float:
    """A ``timings`` value in ms (the path of a bad one made only then: six per entry)."""
    value = timings.get(name)
    if type(value) is int or type(value) is float:
        return _ms(value)
    if value is None:
        return 0.0
    raise InvalidEntry(f"timings.{name} is {_shown(value)}, not a number")


def _captured(entry: Any, client: ClientKey) -> Captured | str:
    if not isinstance(entry, dict):
        raise InvalidEntry(f"the entry is {_shown(entry)}, not an object")
    request = _get(entry, "request", "request", dict, required=True)
    url: str = _get(request, "url", "request.url", str, required=True)
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return NOT_HTTP
        port = parts.port
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        elif port == 0:
            raise ValueError("port 0")
    except ValueError as e:
        raise InvalidEntry(f"request.url {_shown(url)} is not a valid URL ({str(e).lower()})") from None
    method = _get(request, "method", "request.method", str, required=True).upper()
    if not _METHOD.match(method):
        return BAD_METHOD
    response = _get(entry, "response", "response", dict, required=True)
    status_value = _get(response, "status", "response.status", float, required=True)
    if status_value <= 0:
        return NO_RESPONSE
    if status_value != int(status_value) or not 100 <= status_value <= 599:
        raise InvalidEntry(f"response.status is {_shown(status_value)}, not an HTTP status (100 to 599)")
    status = int(status_value)
    if status == 101:
        return WEBSOCKET
    started = _started(_get(entry, "startedDateTime", "startedDateTime", str, required=True))
    timings = _get(entry, "timings", "timings", dict) or {}

    total = _ms(_get(entry, "time", "time", float))
    sending = _timing(timings, "blocked") + _timing(timings, "dns") + _timing(timings, "connect") + _timing(
        timings, "send")
    waiting = _timing(timings, "wait") + _timing(timings, "receive")
    request_end = started + min(sending, total) / 1000
    finished = started + max(total, sending + waiting) / 1000
    headers = _headers(request, "request")
    response_headers = _headers(response, "response")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    content = _get(response, "content", "response.content", dict) or {}
    response_type = _get(content, "mimeType", "response.content.mimeType", str) or _content_type(response_headers)
    request_type, request_body = _request_body(_get(request, "postData", "request.postData", dict), headers)
    agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    version = _get(request, "httpVersion", "request.httpVersion", str)
    reason = _get(response, "statusText", "response.statusText", str) or ""
    return Captured(
        (client[0], agent), started, request_end, finished, method, parts.scheme, host,
        port, path, f"{parts.scheme}://{parts.netloc}{path}", _http_version(version), headers,
        request_body, request_type, status, reason, response_headers,
        _body(content, "response.content"), response_type,
        round(waiting if waiting else max(finished - request_end, 0.0) * 1000, 3))


def _started(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise InvalidEntry(f"startedDateTime {_shown(text)} is not a date and time (ISO 8601)") from None


_MAX_MS = 366 * 86_400_000.0
"""No request takes a year: a longer time or timing is a bad value (and would make no session file)."""


def _ms(value: float | None) -> float:
    # HAR uses -1 for "does not apply".
    if value is None or not value > 0:
        return 0.0
    return min(float(value), _MAX_MS)


def _headers(message: dict[str, Any], where: str) -> list[Header]:
    headers: list[Header] = []
    for i, h in enumerate(_get(message, "headers", f"{where}.headers", list) or ()):
        if type(h) is dict and type(name := h.get("name")) is str and type(value := h.get("value")) is str:
            if not name.startswith(":"):  # the usual header: no path made for it
                headers.append((name, value))
            continue
        at = f"{where}.headers[{i}]"
        if not isinstance(h, dict):
            raise InvalidEntry(f"{at} is {_shown(h)}, not an object")
        name = _get(h, "name", f"{at}.name", str, required=True)
        if not name.startswith(":"):
            headers.append((name, _scalar(h, "value", f"{at}.value")))
    return headers


def _scalar(parent: dict[str, Any], key: str, path: str) -> str:
    """A text value that some exporters write as a number: as text."""
    if key not in parent:
        raise InvalidEntry(f"no {path}")
    value = parent[key]
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidEntry(f"{path} is {_shown(value)}, not text")


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
    ctype = _get(post, "mimeType", "request.postData.mimeType", str) or _content_type(headers)
    if _get(post, "text", "request.postData.text", str) is not None:
        return ctype, _body(post, "request.postData")
    params = _get(post, "params", "request.postData.params", list)
    if params:
        # Firefox may give only the parsed form fields of a form post.
        fields = []
        for i, p in enumerate(params):
            at = f"request.postData.params[{i}]"
            if not isinstance(p, dict):
                raise InvalidEntry(f"{at} is {_shown(p)}, not an object")
            fields.append((_get(p, "name", f"{at}.name", str, required=True),
                           _scalar(p, "value", f"{at}.value") if p.get("value") is not None else ""))
        try:
            return ctype, urlencode(fields).encode("ascii")
        except UnicodeEncodeError:
            raise InvalidEntry("request.postData.params holds text that is not valid Unicode") from None
    return ctype, b""


def _body(holder: dict[str, Any], where: str) -> bytes:
    """The bytes of a ``postData`` or ``content``: its ``text``, decoded if its ``encoding`` is base64."""
    # No text: exported without bodies (or as a file reference); the status and headers still count.
    text: str | None = _get(holder, "text", f"{where}.text", str)
    if text is None:
        return b""
    if _get(holder, "encoding", f"{where}.encoding", str) == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:
            pass
        try:  # some exporters wrap the lines (MIME style): only whitespace may be set aside
            return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
        except ValueError:
            raise InvalidEntry(f"{where}.text is not valid base64 (its encoding says base64)") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEntry(f"{where}.text is not valid Unicode (a lone surrogate)") from None
