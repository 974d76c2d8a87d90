"""Send one prepared request and report it to Locust, without per-request wrappers.

``FastHttpSession.request(..., catch_response=True)`` builds a response context manager
for every request so that the caller can decide its outcome. The replay decides every
outcome (by the recorded status class), so it sends through the session's own safe
sender, which never raises for a network fault, and fires Locust's ``request`` event
itself with the same fields. Redirects are switched off once per client, not per request.

Each socket operation has its own timeout (the user's ``connection_timeout`` and
``network_timeout``), but a target that dribbles its answer a byte at a time never trips
one; the whole request therefore runs under one deadline as well (``--timeout``), so that a
slow target is a failure with its reason, not a request that holds its user until the run
ends and is never counted. A failure's reason names the session and step and says what
happened in words (refused, no connection within N s, reset, cut off after the headers),
not the client library's exception text. The deadline is kept by one watchdog per process
(``replayer.deadlines``), not a timer per request.

The standard library's cookie jar does its work (a lock, its policy's clock, a walk of its
domains, a look for ``Set-Cookie`` in the answer) on every request, cookies or not: ~7 % of
the client's CPU per request against a target that sets none. The jar here does it only when
there is a cookie to send or one to take, which gives the same cookies.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any

from gevent import Timeout
from geventhttpclient.response import HTTPConnectionClosed
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastHttpSession
from locust.exception import CatchResponseError

from replayer.deadlines import deadlines
from replayer.steps import Headers, Step

_ABSOLUTE = ("http://", "https://")
_NO_CONTEXT: dict[str, Any] = {}


class Sender:
    """Sends on one client (one cookie jar) and reports each request as Locust's ``request`` event."""

    __slots__ = ("_send", "_fire", "_base", "_timeout", "_connect_timeout", "_expired")

    def __init__(self, client: FastHttpSession, fire: Callable[..., Any], timeout: float,
                 connect_timeout: float) -> None:
        # Redirects are replayed as recorded: the request that followed one is in the session.
        client.client.redirect_response_codes = frozenset()  # type: ignore[misc]  # as Locust does per request
        if type(client.cookiejar) is CookieJar and not client.cookiejar._cookies:  # type: ignore[attr-defined]
            client.cookiejar = client.client.cookiejar = LeanCookieJar()
        self._send = client._send_request_safe_mode
        self._fire = fire
        self._base = client.base_url or ""
        self._timeout, self._connect_timeout = timeout, connect_timeout
        # Raised by the process's watchdog in a request past its deadline; never started as a timer.
        self._expired = Timeout(timeout)

    def __call__(self, step: Step, url: str, headers: Headers | dict[str, str], body: bytes | None,
                 ) -> tuple[Any, bool]:
        """Send ``step`` (its live URL, headers and body); the response, and whether it failed (no
        answer, or not the recorded status class)."""
        method, expected = step.method, step.expected
        full = url if url.startswith(_ABSOLUTE) else self._base + url
        started = time.time()
        began = time.perf_counter()
        exception: Exception | None = None
        watched = deadlines.start(self._timeout, self._expired)
        try:
            # The client library adds to the headers it is given (content type, cookies): give it a copy.
            try:
                response: Any = self._send(method, full, payload=body, headers=dict(headers))
            except ValueError as e:  # (UnicodeEncodeError too) what no request head may hold: a CR or LF
                # in a live value, a header beyond Latin-1. Refused before anything is sent: a failure.
                response = _Unsent(e)
                exception = CatchResponseError(f"{step.label}: cannot be sent: {e}")
            try:
                length = len(response.content) if response.content else 0
            except FAILURE_EXCEPTIONS as e:  # the body broke off, or the deadline passed while it came
                length = 0
                exception = CatchResponseError(f"{step.label}: response cut off after the headers (status "
                                               f"{response.status_code}): {self._why(e, headed=True)}")
        finally:
            deadlines.end(watched)
        elapsed = (time.perf_counter() - began) * 1000
        status = response.status_code
        if exception is None and not (status and (status // 100 == expected or not expected)):
            reason = (f"{step.label}: {self._why(response.error, headed=False)}" if not status
                      else f"{step.label}: status {status}, recorded {expected}xx")
            exception = CatchResponseError(reason)
        self._fire(request_type=method, name=step.name, response_time=elapsed, response_length=length,
                   response=response, context=_NO_CONTEXT, exception=exception, start_time=started, url=full)
        return response, exception is not None

    def _why(self, error: BaseException | None, headed: bool) -> str:
        return why(error, headed, self._timeout, self._connect_timeout)


class LeanCookieJar(CookieJar):
    """A ``CookieJar`` that skips the request's cookie header when it holds no cookie, and the
    answer's cookies when it sets none: the standard jar does nothing else in either case
    (its RFC 2965 ``Cookie2`` header is off by default)."""

    def add_cookie_header(self, request: Any) -> None:
        if self._cookies or self._policy.rfc2965:  # type: ignore[attr-defined]
            super().add_cookie_header(request)

    def extract_cookies(self, response: Any, request: Any) -> None:
        headers = response.info()  # what the standard jar reads: the client library's headers, case-blind
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response, request)


class _Unsent:
    """In place of a response, for a request the client library refused to write."""

    __slots__ = ("error",)
    status_code = 0
    content = b""
    headers: dict[str, str] = {}

    def __init__(self, error: Exception) -> None:
        self.error = error


def why(error: BaseException | None, headed: bool, timeout: float, connect_timeout: float) -> str:
    """A request's failure in words, from what the client library raised (``RetriesExceeded`` wraps
    the first error as ``original``) and whether the response's head had come (``headed``).

    A timeout is told by what had come when it struck, not by which timer struck: a silent
    target trips the socket's read timeout and the deadline at the same moment (both are
    ``--timeout``), and which of the two fires first says nothing about the target."""
    cause = getattr(error, "original", None) or error
    if cause is None:
        return "no response"
    if isinstance(cause, socket.timeout | Timeout):
        if _while_connecting(cause):
            return f"timed out: no connection within {min(connect_timeout, timeout):g} s (--connect-timeout)"
        if headed:
            return f"timed out: no complete response within {timeout:g} s (--timeout)"
        return f"timed out: no answer within {timeout:g} s (--timeout)"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError) or getattr(cause, "errno", None) == errno.ECONNRESET:
        return "connection reset by the target"
    if isinstance(cause, HTTPConnectionClosed):
        return "connection closed or reset by the target before it answered"
    return str(cause) or type(cause).__name__


def _while_connecting(error: BaseException) -> bool:
    """Whether ``error`` was raised while the socket connected: geventhttpclient raises the same
    ``socket.timeout`` for a connect and for a read, and only where it came from tells them apart."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _CONNECTING:
            return True
        tb = tb.tb_next
    return False


_CONNECTING = frozenset({"_create_socket", "_connect_socket"})
