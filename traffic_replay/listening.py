"""The addresses a command is about to listen on: checked before the child that listens starts.

Locust's web UI, its master port, the Prometheus endpoint and the recording proxy each
fail in their own way when their port is taken (a traceback from ZeroMQ, a summary of an
empty run, mitmproxy's three lines). Trying the port here first turns each into one line
naming the flag, before anything is read or sent. Listening on every interface is allowed,
with a warning: an open proxy, web UI or master port is an open door.
"""

from __future__ import annotations

import errno
import socket

from traffic_replay.errors import ConfigError

ALL_INTERFACES = frozenset({"0.0.0.0", "::", "*", ""})


def check_free(host: str, port: int, flag: str) -> None:
    """``ConfigError`` naming ``flag`` when ``host:port`` cannot be listened on now (port 0: any port will do)."""
    if port == 0:
        return
    bind_host = "0.0.0.0" if host in ("*", "") else host
    try:
        infos = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"{flag} {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the servers themselves do: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            what = "address in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise ConfigError(f"{flag} {port} on {host}: {what}") from None


def open_door(host: str, what: str, flag: str) -> str | None:
    """A warning when ``host`` is every interface, else None."""
    if host not in ALL_INTERFACES:
        return None
    return (f"warning: {what} listens on all interfaces ({host or '*'}): anyone who can reach this machine can "
            f"use it; {flag} 127.0.0.1 keeps it to this machine")
