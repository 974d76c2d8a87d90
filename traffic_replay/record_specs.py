"""The grammar of the recorder's option values, as pure parsers.

Shared by the settings (so that ``replay record`` refuses a bad value in one line before
mitmproxy starts) and by the recorder addon (which turns the same ``ValueError`` into
mitmproxy's ``OptionsError`` when it runs under ``mitmdump``): one grammar, two callers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

# RFC 9110 token characters: what a header or cookie name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

KeyKind = Literal["client", "cookie", "header"]


class KeySpec(NamedTuple):
    """A ``--session-key``: ``client``, ``cookie:NAME`` or ``header:NAME``."""

    kind: KeyKind
    name: str = ""
    """Cookie name (case-sensitive) or header name (lower case); empty for ``client``."""


def parse_session_key(text: str) -> KeySpec:
    """``client``, ``cookie:NAME`` or ``header:NAME``; ``ValueError`` says what is wrong."""
    spec = text.strip()
    if spec == "client":
        return KeySpec("client")
    kind, sep, name = spec.partition(":")
    name = name.strip()
    if not sep or kind not in ("cookie", "header"):
        raise ValueError(f"'{text}' is not 'client', 'cookie:NAME' or 'header:NAME'")
    if not _TOKEN.match(name):
        raise ValueError(f"'{text}': '{name}' is not a valid {kind} name")
    return KeySpec("cookie", name) if kind == "cookie" else KeySpec("header", name.lower())


class HostPattern(NamedTuple):
    """An ``--allow-host``."""

    host: str
    """Lower case; a leading ``*.`` matches any subdomain (and not the domain itself)."""
    port: int | None = None


def parse_host(text: str) -> HostPattern:
    """``example.com``, ``example.com:8443``, ``*.example.com``, ``127.0.0.1`` or ``[::1]:8080``."""
    spec = text.strip().lower()
    if "://" in spec or "/" in spec:
        raise ValueError(f"'{text}' is not a host name: give 'example.com' or 'example.com:8443', not a URL")
    host, port_text = spec, ""
    if spec.startswith("["):  # [IPv6] or [IPv6]:port
        host, _, rest = spec[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else ""
    elif spec.count(":") == 1:  # one colon is a port; more is a bare IPv6 address
        host, _, port_text = spec.partition(":")
    port = None
    if port_text or spec.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"'{text}': '{port_text}' is not a port number")
        port = int(port_text)
    name = host.removeprefix("*.")
    if not name or not re.fullmatch(r"[a-z0-9._:-]+", name):
        raise ValueError(f"'{text}' is not a host name")
    return HostPattern(host, port)


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """The ``--exclude`` regular expressions, compiled; ``ValueError`` names the bad one."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise ValueError(f"'{pattern}' is not a regular expression: {e}") from None
    return compiled
