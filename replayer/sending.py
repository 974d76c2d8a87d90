"""Send one prepared request and report it to Locust, without per-request wrappers.

``FastHttpSession.request(..., catch_response=True)`` builds a response context manager
for every request so that the caller can decide its outcome. The replay decides every
outcome (by the recorded status class), so it sends through the session's own safe
sender, which never raises for a network fault, and fires Locust's ``request`` event
itself with the same fields. Redirects are switched off once per client, not per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastHttpSession
from locust.exception import CatchResponseError

from replayer.prepared import Headers, Step

_ABSOLUTE = ("http://", "https://")
_NO_CONTEXT: dict[str, Any] = {}


class Sender:
    """Sends on one client (one cookie jar) and reports each request as Locust's ``request`` event."""

    __slots__ = ("_send", "_fire", "_base")

    def __init__(self, client: FastHttpSession, fire: Callable[..., Any]) -> None:
        # Redirects are replayed as recorded: the request that followed one is in the session.
        client.client.redirect_response_codes = frozenset()  # type: ignore[misc]  # as Locust does per request
        self._send = client._send_request_safe_mode
        self._fire = fire
        self._base = client.base_url or ""

    def __call__(self, step: Step, url: str, headers: Headers | dict[str, str], body: bytes | None,
                 ) -> tuple[Any, bool]:
        """Send ``step`` (its live URL, headers and body); the response, and whether it failed (no
        answer, or not the recorded status class)."""
        method, expected = step.method, step.expected
        full = url if url.startswith(_ABSOLUTE) else self._base + url
        started = time.time()
        began = time.perf_counter()
        # The client library adds to the headers it is given (content type, cookies): give it a copy.
        response: Any = self._send(method, full, payload=body, headers=dict(headers))
        exception: Exception | None = None
        try:
            length = len(response.content) if response.content else 0
        except FAILURE_EXCEPTIONS as e:  # the body broke off: the request failed
            length, exception = 0, e
        elapsed = (time.perf_counter() - began) * 1000
        status = response.status_code
        if exception is None and not (status and (status // 100 == expected or not expected)):
            reason = (f"{step.label}: {response.error or 'no response'}" if not status
                      else f"{step.label}: status {status}, recorded {expected}xx")
            exception = CatchResponseError(reason)
        self._fire(request_type=method, name=step.name, response_time=elapsed, response_length=length,
                   response=response, context=_NO_CONTEXT, exception=exception, start_time=started, url=full)
        return response, exception is not None
