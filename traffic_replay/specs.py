"""The grammar of every option value that is more than a number or a word, as pure parsers.

Each parser takes the text a user typed and returns a small typed value, or raises
``ValueError`` saying what is wrong (as mitmproxy's ``blocklist.parse_spec``). The settings
call them when they are built, so a bad value is refused in one line before anything
starts and every process holds parsed values; the recorder addon calls the same ones
from ``configure`` and turns the ``ValueError`` into mitmproxy's ``OptionsError`` when it
runs under ``mitmdump``: one grammar per option, whoever reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

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


class HostMapping(NamedTuple):
    """A ``--map-host ORIGINAL=URL``: a recorded host's requests go to URL."""

    original: str
    """``host`` or ``host:port``, lower case."""
    url: str
    """``http(s)://host[:port]``, no trailing slash."""


def parse_host_mapping(text: str) -> HostMapping:
    original, sep, url = text.partition("=")
    original = original.strip().lower()
    parts = urlsplit(url.strip())
    if not sep or not original or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{text}' is not ORIGINAL_HOST[:PORT]=http(s)://HOST[:PORT]")
    return HostMapping(original, url.strip().rstrip("/"))


class NamePattern(NamedTuple):
    """A ``--name-pattern REGEX=NAME``: requests whose path (and query) match are named NAME."""

    regex: str
    name: str
    """May refer to the regex's groups (``\\1``)."""


def parse_name_pattern(text: str) -> NamePattern:
    # The last '=' splits: a regex may hold one, a name rarely does.
    regex, sep, name = text.rpartition("=")
    if not sep or not regex or not name:
        raise ValueError(f"'{text}' is not REGEX=NAME")
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"'{text}': '{regex}' is not a regular expression: {e}") from None
    return NamePattern(regex, name)


class DataColumn(NamedTuple):
    """A ``--data-map COLUMN=RECORDED``: the column's value replaces a recorded value wherever it was sent."""

    column: str
    recorded: str


def parse_data_column(text: str) -> DataColumn:
    column, sep, recorded = text.partition("=")
    if not sep or not column.strip() or not recorded:
        raise ValueError(f"'{text}' is not COLUMN=RECORDED_VALUE")
    return DataColumn(column.strip(), recorded)


def parse_mode(text: str) -> str:
    """A recording proxy mode: ``regular``, ``reverse:URL`` or ``upstream:PROXY_URL``."""
    if text == "regular":
        return text
    kind, _, url = text.partition(":")
    if kind in ("reverse", "upstream") and urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname:
        return text
    raise ValueError(f"'{text}' is not 'regular', 'reverse:http(s)://HOST[:PORT]' or 'upstream:http(s)://PROXY[:PORT]'")


def parse_base_url(text: str) -> str:
    """A target base URL, ``http(s)://host[:port][/prefix]``, without its trailing slash."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{text}' is not an http(s) URL like http://127.0.0.1:8000")
    return text.rstrip("/")


_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_timespan(text: str) -> int:
    """``--run-time``: ``90``, ``30s``, ``5m``, ``1h30m``, in whole seconds, as Locust reads it; ``ValueError`` else."""
    spec = text.strip().lower()
    if spec.isdigit():
        return int(spec)
    m = _TIMESPAN.match(spec)
    if not spec or m is None or not any(m.groups()):
        raise ValueError(f"'{text}' is not a duration: write e.g. 90, 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds
