"""Which finished exchanges are not recorded, and why: hosts, URL patterns, static assets.

Pure Python, no mitmproxy: the recorder asks ``FlowFilter.skip_reason`` for every flow,
an import can ask it for every entry. Everything is parsed once, when the options are
set; a bad host or pattern is a ``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

from traffic_replay.specs import HostPattern, compile_patterns, parse_host

__all__ = ["EXCLUDED", "HOST_NOT_ALLOWED", "STATIC", "FlowFilter", "HostPattern", "compile_patterns", "is_static",
           "parse_host"]

# Reasons, as counted and shown in the recorder's summary.
HOST_NOT_ALLOWED = "host not allowed"
EXCLUDED = "excluded"
STATIC = "static"

STATIC_EXTENSIONS = frozenset({
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp", "tif", "tiff",
    "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "webm", "ogg", "wav", "m4a", "mov", "wasm",
})
# Matched against the start of the lower-cased response Content-Type.
STATIC_TYPES = ("image/", "font/", "audio/", "video/", "text/css", "text/javascript", "application/javascript",
                "application/x-javascript", "application/font-", "application/x-font-", "application/wasm",
                "application/vnd.ms-fontobject")


def is_static(path: str, content_type: str | None) -> bool:
    """A static asset, by the path's extension or by the response's Content-Type."""
    if content_type and content_type.lower().lstrip().startswith(STATIC_TYPES):
        return True
    end = path.split("?", 1)[0].rsplit("/", 1)[-1]
    return "." in end and end.rsplit(".", 1)[1].lower() in STATIC_EXTENSIONS


class FlowFilter:
    """The recording filters, compiled once; ``skip_reason`` is called for every flow."""

    def __init__(self, allow_hosts: Sequence[str] = (), exclude: Sequence[str] = (), static: bool = True) -> None:
        self.allow_hosts = [parse_host(h) for h in allow_hosts]
        self.exclude = compile_patterns(exclude)
        self.static = static
        self.active = bool(self.allow_hosts or self.exclude or not static)
        """False when nothing is ever skipped: the recorder then does not ask."""

    def host_allowed(self, host: str, port: int) -> bool:
        host = host.lower()
        for allowed in self.allow_hosts:
            if allowed.port is not None and allowed.port != port:
                continue
            if allowed.host.startswith("*."):
                if host.endswith(allowed.host[1:]):
                    return True
            elif host == allowed.host:
                return True
        return False

    def skip_reason(self, host: str, port: int, url: str, path: str, content_type: str | None) -> str | None:
        """Why this exchange is not recorded, or ``None`` to record it."""
        if self.allow_hosts and not self.host_allowed(host, port):
            return HOST_NOT_ALLOWED
        if any(p.search(url) for p in self.exclude):
            return EXCLUDED
        if not self.static and is_static(path, content_type):
            return STATIC
        return None
