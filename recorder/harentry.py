"""One HAR entry into an exchange, or the reason it is skipped.

Only HAR 1.2 fields are read, so that Chrome, Firefox and Playwright exports all work
(nothing requires Chrome's ``_resourceType`` and the like): ``startedDateTime`` and
``time`` give the timing (``timings`` splits the request from the wait), ``postData`` the
request body, ``content`` the response body (decoded when ``encoding`` is ``base64``).
HTTP/2 pseudo-headers (``:authority``...) are dropped: the recorder does not keep them either.

An entry that cannot become a replayable request is skipped with its reason: a URL that is
not http(s) (``data:``, ``blob:``, ``ws:``, extensions), no response (status 0: blocked,
cancelled or failed in the browser), a WebSocket upgrade (101), or an entry that is not a
valid HAR entry: an ``Invalid`` saying what is wrong, by the field's path (``no
request.url``, ``response.status is "abc", not a number``). Every field read is checked for
its JSON type here, where the entry is parsed (in the child process for a big file): what
crosses to the importer is plain data or the reason, never an exception.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from recorder.harparse import first_line
from recorder.pipeline import Captured
from recorder.sessionkeys import ClientKey
from traffic_replay.errors import InvalidEntry, one_line
from traffic_replay.format import METHOD_PATTERN, Header
from traffic_replay.sharing import unsendable_header

NOT_HTTP = "not an http(s) URL"
NO_RESPONSE = "no response (status 0: blocked, cancelled or failed)"
WEBSOCKET = "WebSocket upgrade (not replayable as HTTP)"
INVALID = "not a valid HAR entry"
BAD_METHOD = "not an HTTP method"
_METHOD = re.compile(METHOD_PATTERN)
_WHITESPACE = re.compile(r"\s+")


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


def shown(value: Any) -> str:
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
        raise InvalidEntry(f"{path} is {shown(value)}, not {name}")
    return value


def _timing(timings: dict[str, Any], name: str) -> float:
    """A ``timings`` value in ms (the path of a bad one made only then: six per entry)."""
    value = timings.get(name)
    if type(value) is int or type(value) is float:
        return _ms(value)
    if value is None:
        return 0.0
    raise InvalidEntry(f"timings.{name} is {shown(value)}, not a number")


def _captured(entry: Any, client: ClientKey) -> Captured | str:
    if not isinstance(entry, dict):
        raise InvalidEntry(f"the entry is {shown(entry)}, not an object")
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
        raise InvalidEntry(f"request.url {shown(url)} is not a valid URL ({str(e).lower()})") from None
    method = _get(request, "method", "request.method", str, required=True).upper()
    if not _METHOD.match(method):
        return BAD_METHOD
    response = _get(entry, "response", "response", dict, required=True)
    status_value = _get(response, "status", "response.status", float, required=True)
    if status_value <= 0:
        return NO_RESPONSE
    if status_value != int(status_value) or not 100 <= status_value <= 599:
        raise InvalidEntry(f"response.status is {shown(status_value)}, not an HTTP status (100 to 599)")
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
    if not path.isprintable() or " " in path:  # as a browser sends it: a session file refuses it raw
        path = "".join(c if c.isprintable() and c != " " else quote(c) for c in path)
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
        raise InvalidEntry(f"startedDateTime {shown(text)} is not a date and time (ISO 8601)") from None


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
        else:
            at = f"{where}.headers[{i}]"
            if not isinstance(h, dict):
                raise InvalidEntry(f"{at} is {shown(h)}, not an object")
            name = _get(h, "name", f"{at}.name", str, required=True)
            if not name.startswith(":"):
                headers.append((name, _scalar(h, "value", f"{at}.value")))
        # A session file refuses what would split the request it is sent in: the entry is invalid here instead.
        if where == "request" and headers and (what := unsendable_header(*headers[-1])) is not None:
            raise InvalidEntry(f"{where}.headers[{i}]: the header's {what}")
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
    raise InvalidEntry(f"{path} is {shown(value)}, not text")


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
                raise InvalidEntry(f"{at} is {shown(p)}, not an object")
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
