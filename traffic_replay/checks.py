"""Preflight health check of a target: reachable, TLS valid, answering, and how fast.

Run before every replay (unless ``--no-check``) so that a wrong ``--host`` fails in a
second with one clear line instead of a minute of connection errors.

The check must provoke nothing in the target's logs. It probes only recorded requests that
need no session's state: a GET or HEAD to the primary host, answered 2xx or 3xx when it
was recorded, that carries no credentials (``Authorization``, ``Cookie``, an API key or
token header, a redacted value) and no correlated value (a token or id an earlier response
handed out). When no recorded request is such, it only connects (and for https completes a
TLS handshake that verifies the certificate) and sends no HTTP request at all.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import httpx

from traffic_replay.correlation import detect
from traffic_replay.errors import TargetError
from traffic_replay.format import Request, Session, replace
from traffic_replay.hosts import host_key, primary_host, unreplayable
from traffic_replay.redacted import PLACEHOLDER

PROBED_METHODS = frozenset({"GET", "HEAD"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# X-API-Key, X-Auth-Token, X-Session-Id, X-CSRF-Token, Api-Secret...: a header or query
# parameter with one of these in its name carries a credential or a session's state.
_CREDENTIAL_NAME = re.compile(r"api[-_]?key|auth(?!or)|token|secret|session|sess[-_]?id|csrf|xsrf|passw|signature",
                              re.IGNORECASE)
NO_GET = "no request sent: nothing recorded is a GET to the primary host"
ALL_STATEFUL = "no request sent: every recorded GET needs a session's state"


class Probe(NamedTuple):
    method: str
    """``GET`` or ``HEAD``; empty for a connection only."""
    url: str
    """The URL requested; for a connection only, ``host:port``."""
    status: int | None
    """The status answered; None for a connection only."""
    latency_ms: float
    detail: str = ""
    """For a connection only: whether TLS was verified, and why no request was sent."""

    def describe(self) -> str:
        if self.status is None:
            return f"connected to {self.url}{self.detail}"
        return f"{self.method} {self.url} answered {self.status} in {self.latency_ms:.0f} ms"


MAX_PROBES = 5


def _has_placeholder(text: str) -> bool:
    # Percent-encoded in URLs and forms: «redacted:…» is %C2%ABredacted%3A…%C2%BB there.
    return PLACEHOLDER.search(text) is not None or PLACEHOLDER.search(unquote_plus(text)) is not None


def carries_credentials(request: Request) -> bool:
    """Whether ``request`` sends a credential: an auth, cookie or key header, or a redacted value anywhere."""
    for name, value in request.headers:
        if name.lower() in _CREDENTIAL_HEADERS or _CREDENTIAL_NAME.search(name) or _has_placeholder(value):
            return True
    if _has_placeholder(request.path):
        return True
    if any(_CREDENTIAL_NAME.search(name) for name, _ in parse_qsl(urlsplit(request.path).query)):
        return True
    body = request.body
    return body is not None and body.encoding == "text" and _has_placeholder(body.data)


def probe_hosts(session: Session) -> tuple[frozenset[str], frozenset[str]]:
    """(the ``host:port``s ``session`` sends a GET or HEAD to, those of the requests that may be probed): the
    cheap part of ``_probeable``, for a recording's read to tell which sessions need not be looked at again
    once the primary host is known (``check_recorded``)."""
    gets, maybe = set(), set()
    credentials = _CREDENTIAL_HEADERS
    for request in session.requests:
        if request.method not in PROBED_METHODS:
            continue
        gets.add(key := host_key(request))
        response = request.response
        if (response is not None and 200 <= response.status < 400
                and not any(name.lower() in credentials for name, _ in request.headers)):
            maybe.add(key)
    return frozenset(gets), frozenset(maybe)


def _probeable(request: Request, primary: str | None) -> bool:
    """All but the correlation test: cheap, so that detection runs only where a candidate is left."""
    response = request.response
    return (request.method in PROBED_METHODS and host_key(request) == primary
            and response is not None and 200 <= response.status < 400
            and unreplayable(request) is None and not carries_credentials(request))


def probe_requests(sessions: Sequence[Session], limit: int = MAX_PROBES, primary: str | None = None,
                   ) -> list[tuple[str, str]]:
    """(method, path) of the first request of each session that needs no state (each once, at most
    ``limit``: a health check, not a crawl of a thousand sessions); may be empty. ``primary``: the
    sessions' primary host when it is known (else worked out of all of them)."""
    primary = primary or primary_host(list(sessions))
    probes: dict[tuple[str, str], None] = {}
    for session in sessions:
        if len(probes) >= limit:
            break
        candidates = [step for step, r in enumerate(session.requests) if _probeable(r, primary)]
        if not candidates:
            continue
        # A use depends only on what came before it: the steps up to the last candidate looked at
        # are enough (a session of a million requests is not analysed for a health check).
        looked_at = candidates[:MAX_PROBES * 2]
        prefix = replace(session, requests=session.requests[:looked_at[-1] + 1])
        correlated = {use.step for c in detect(prefix) for use in c.uses}
        first = next((step for step in looked_at if step not in correlated), None)
        if first is not None:
            request = session.requests[first]
            probes[(request.method, request.path)] = None
    return list(probes)


def _explain(url: str, error: httpx.HTTPError, timeout: float) -> str:
    text = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"{url}: TLS check failed: {text} (use --no-check to skip the preflight check)"
    if isinstance(error, httpx.TimeoutException):
        return f"{url}: no answer within {timeout:g}s"
    if isinstance(error, httpx.ConnectError):
        return f"{url}: cannot connect: {text}"
    return f"{url}: request failed: {text}"


def _request(host: str, probes: list[tuple[str, str]], timeout: float) -> list[Probe]:
    done: list[Probe] = []
    with httpx.Client(base_url=host, timeout=timeout, follow_redirects=False, verify=True) as client:
        for method, path in probes:
            url = f"{host}{path}"
            started = time.perf_counter()
            try:
                response = client.request(method, path)
            except httpx.HTTPError as e:
                raise TargetError(_explain(url, e, timeout)) from e
            latency = (time.perf_counter() - started) * 1000
            if response.status_code >= 500:
                raise TargetError(f"{url}: the target answered {response.status_code} {response.reason_phrase}")
            done.append(Probe(method, url, response.status_code, latency))
    return done


def _connect(host: str, timeout: float, why: str) -> Probe:
    """A TCP connection, and for https a TLS handshake verifying the certificate; no HTTP request."""
    parts = urlsplit(host)
    hostname = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    address = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
    started = time.perf_counter()
    try:
        with socket.create_connection((hostname, port), timeout=timeout) as sock:
            if tls:
                # The trust store the replay's own HTTP clients would use; the handshake happens in wrap_socket.
                with httpx.create_ssl_context().wrap_socket(sock, server_hostname=hostname):
                    pass
    except ssl.SSLCertVerificationError as e:
        raise TargetError(f"{host}: TLS check failed: {e.verify_message or e}"
                          " (use --no-check to skip the preflight check)") from e
    except ssl.SSLError as e:
        raise TargetError(f"{host}: TLS check failed: {e.reason or e} (use --no-check to skip the preflight check)"
                          ) from e
    except TimeoutError as e:
        raise TargetError(f"{host}: no answer within {timeout:g}s") from e
    except OSError as e:
        raise TargetError(f"{host}: cannot connect: {e.strerror or e}") from e
    latency = (time.perf_counter() - started) * 1000
    return Probe("", address, None, latency,
                 f"{' (TLS verified)' if tls else ''} in {latency:.0f} ms, {why}")


def check_target(host: str, sessions: Sequence[Session] | None = None, timeout: float = 5.0) -> list[Probe]:
    """Probe ``host``; raise ``TargetError`` on the first probe that fails.

    Without recordings, ``GET /``. With them, the requests of ``probe_requests``, or when
    there are none a connection only.
    """
    if not sessions:
        return _request(host, [("GET", "/")], timeout)
    probes = probe_requests(sessions)
    if probes:
        return _request(host, probes, timeout)
    primary = primary_host(list(sessions))
    any_get = any(r.method in PROBED_METHODS and host_key(r) == primary for s in sessions for r in s.requests)
    return [_connect(host, timeout, ALL_STATEFUL if any_get else NO_GET)]


def check_recorded(host: str, candidates: Sequence[Session], primary: str | None, any_get: bool,
                   timeout: float = 5.0) -> list[Probe]:
    """``check_target`` for a recording whose read worked out the rest: ``candidates``, in order, are the
    sessions that may hold a probe (``probe_hosts`` names ``primary`` among their second: the others need not
    be read again), ``any_get`` whether any request is a GET or HEAD to the primary host."""
    probes = probe_requests(candidates, primary=primary)  # (the candidates are read only until it has enough)
    if probes:
        return _request(host, probes, timeout)
    return [_connect(host, timeout, ALL_STATEFUL if any_get else NO_GET)]
