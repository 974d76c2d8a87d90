"""Preflight health check of a target: reachable, TLS valid, answering, and how fast.

Run before every replay (unless ``--no-check``) so that a wrong ``--host`` fails in a
second with one clear line instead of a minute of connection errors.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import httpx

from traffic_replay.errors import TargetError
from traffic_replay.format import Session
from traffic_replay.hosts import host_key, primary_host


class Probe(NamedTuple):
    method: str
    url: str
    status: int
    latency_ms: float


def probe_paths(sessions: list[Session] | None) -> list[str]:
    """``/``, or the first recorded GET of each session (each path once)."""
    if not sessions:
        return ["/"]
    # Only requests to the host that --host stands for: others may never be sent at all.
    primary = primary_host(sessions)
    paths: dict[str, None] = {}
    for session in sessions:
        first_get = next((r.path for r in session.requests if r.method == "GET" and host_key(r) == primary), None)
        if first_get is not None:
            paths[first_get] = None
    return list(paths) or ["/"]


def _explain(url: str, error: httpx.HTTPError, timeout: float) -> str:
    text = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"{url}: TLS check failed: {text} (use --no-check to skip the preflight check)"
    if isinstance(error, httpx.TimeoutException):
        return f"{url}: no answer within {timeout:g}s"
    if isinstance(error, httpx.ConnectError):
        return f"{url}: cannot connect: {text}"
    return f"{url}: request failed: {text}"


def check_target(host: str, sessions: list[Session] | None = None, timeout: float = 5.0) -> list[Probe]:
    """GET each probe path of ``host``; raise ``TargetError`` on the first one that fails."""
    probes: list[Probe] = []
    with httpx.Client(base_url=host, timeout=timeout, follow_redirects=False, verify=True) as client:
        for path in probe_paths(sessions):
            url = f"{host}{path}"
            started = time.perf_counter()
            try:
                response = client.get(path)
            except httpx.HTTPError as e:
                raise TargetError(_explain(url, e, timeout)) from e
            latency = (time.perf_counter() - started) * 1000
            if response.status_code >= 500:
                raise TargetError(f"{url}: the target answered {response.status_code} {response.reason_phrase}")
            probes.append(Probe("GET", url, response.status_code, latency))
    return probes
