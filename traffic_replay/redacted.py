"""Redacted values, as both sides see them: the placeholder format and how a replay fills it.

The recorder writes ``«redacted:xxxxxxxx»`` instead of a secret (8 hex digits of an
HMAC-SHA256 of the value, keyed per recordings directory by a key kept in the recording
user's config directory, never beside the recordings): equal secrets look equal, the value
itself is never written, and a replay never needs the key. A replay supplies the real value from the environment
(``REPLAY_SECRET_XXXXXXXX``) or from a ``--data`` column mapped to the placeholder; a
value the server hands out again (a token) is carried over live by correlation instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"«redacted:([0-9a-f]{8})»")
"""What a redacted value looks like (percent-encoded in URLs and form bodies)."""

DEMO_SECRETS = "demo-secrets.env"
"""Beside the bundled recordings: the demo password as REPLAY_SECRET_*, read by ``replay demo``."""


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments and blank lines skipped), as ``.env`` files hold."""
    pairs: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            pairs[name.strip()] = value.strip()
    return pairs


def placeholder(key: bytes, value: str) -> str:
    """The placeholder of ``value`` under ``key``; a placeholder stays itself."""
    if PLACEHOLDER.fullmatch(value):
        return value  # already redacted: redacting twice changes nothing
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"«redacted:{digest[:8]}»"


def secret_env_name(redacted: str) -> str:
    """``«redacted:1a2b3c4d»`` → ``REPLAY_SECRET_1A2B3C4D``: where a replay looks for its value."""
    m = PLACEHOLDER.fullmatch(redacted)
    if m is None:
        raise ValueError(f"'{redacted}' is not a redaction placeholder")
    return f"REPLAY_SECRET_{m.group(1).upper()}"


def secret_from_env(redacted: str, environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get(secret_env_name(redacted))
