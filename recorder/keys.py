"""Redaction keys: kept in the user's config directory, never in the recordings they key.

A recordings directory carries only its identity, ``DIR/.recording-id``: a random id
(32 hex digits) written there by the first recorder or import that redacts into it. It is
not secret: it names the directory's key, ``$XDG_CONFIG_HOME/traffic-replay/keys/<id>``
(``~/.config/...`` by default; the directory mode 0700, each key 0600), so that a copy of
the recordings (zipped, attached to a ticket, pushed to a repository) does not carry what
it takes to test password guesses against their placeholders. The same directory on the
same machine keeps its key, and its placeholders stay stable across recordings and imports.

Sharing a key is deliberate: copy the key file into the other machine's config directory
under the same name, or give ``--redaction-key-file PATH`` (``REPLAY_REDACTION_KEY_FILE``),
which uses (or creates) that file instead of the directory's own key.

A directory recorded before this (``DIR/.redaction-key``) is migrated on its next use: its
key moves to the config directory, so earlier placeholders stay what they were.

Pure Python, no mitmproxy. Files are written aside and linked into place, so that two
recorders starting together agree on one id and one key.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from traffic_replay.errors import RedactionKeyError

__all__ = ["ID_FILE", "LEGACY_KEY_FILE", "RedactionKeyError", "key_path", "keys_dir", "load_key", "recording_id"]

ID_FILE = ".recording-id"
"""In the recordings directory: its identity, which names its key (not a secret)."""
LEGACY_KEY_FILE = ".redaction-key"
"""Where a recordings directory kept its key before: moved out on its next use."""
KEY_BYTES = 32

_ID = re.compile(r"[0-9a-f]{32}")
_KEY = re.compile(r"[0-9a-fA-F]{64}")


def config_home(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CONFIG_HOME``, or ``~/.config`` when it is unset, empty or relative (as the XDG spec says)."""
    value = environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".config"


def keys_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return config_home(environ) / "traffic-replay" / "keys"


def recording_id(directory: Path, create: bool = True) -> str | None:
    """The recordings directory's id, created (with ``create``) if it has none yet."""
    path = directory / ID_FILE
    text = _read(path, "recording id")
    if text is None:
        if not create:
            return None
        _write_once(path, secrets.token_hex(16) + "\n", 0o644, "recording id")
        text = _read(path, "recording id") or ""
    value = text.strip()
    # It becomes a file name in the config directory: nothing but hex digits may pass.
    if not _ID.fullmatch(value):
        raise RedactionKeyError(f"{path}: not a recording id (32 hex digits expected); delete it to start "
                                "a new redaction key for the directory")
    return value


def key_path(directory: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the key of ``directory`` lives (its id created if it has none)."""
    return keys_dir(environ) / str(recording_id(directory))


def load_key(directory: Path, key_file: Path | None = None, note: Callable[[str], None] | None = None,
             environ: Mapping[str, str] = os.environ) -> bytes:
    """The redaction key for recordings written into ``directory``: ``key_file``'s if given, else the
    directory's own (created on first use). ``note`` hears what deserves a line: a migrated key, a new
    shared key, a key file others can read."""
    say = note or (lambda _: None)
    legacy = directory / LEGACY_KEY_FILE
    if os.path.lexists(legacy):
        _migrate(directory, legacy, environ, say)
    if key_file is not None:
        return _key(key_file.expanduser(), say, shared=True)
    return _key(key_path(directory, environ), say, shared=False)


def _key(path: Path, say: Callable[[str], None], shared: bool) -> bytes:
    text = _read(path, "redaction key")
    if text is None:
        if not shared:
            _private_dir(path.parent)
        _write_once(path, secrets.token_hex(KEY_BYTES) + "\n", 0o600, "redaction key")
        if shared:
            say(f"replay: created the redaction key {path} (give the same file to share its placeholders)")
        text = _read(path, "redaction key") or ""
    elif _open_to_others(path):
        say(f"replay: WARNING: the redaction key {path} can be read by others: chmod 600 it")
    return _parse_key(path, text)


def _parse_key(path: Path, text: str) -> bytes:
    value = text.strip()
    if not _KEY.fullmatch(value):
        raise RedactionKeyError(f"{path}: not a redaction key (64 hex digits expected); delete it to start a new one")
    return bytes.fromhex(value)


def _migrate(directory: Path, legacy: Path, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Move an old in-directory key to the config directory, under the directory's id."""
    key = _parse_key(legacy, _read(legacy, "redaction key") or "")
    target = key_path(directory, environ)
    _private_dir(target.parent)
    if _read(target, "redaction key") is None:
        _write_once(target, key.hex() + "\n", 0o600, "redaction key")
    if _parse_key(target, _read(target, "redaction key") or "") != key:
        # Two keys for one directory (an old key copied in by hand?): which one is meant is the user's call.
        raise RedactionKeyError(f"{legacy}: an old redaction key, different from the directory's key in {target}; "
                                "delete one of them")
    try:
        legacy.unlink()
    except FileNotFoundError:
        pass  # another recorder moved it at the same time
    except OSError as e:
        raise RedactionKeyError(f"{legacy}: cannot remove the old redaction key: {e.strerror or e}") from e
    say(f"replay: moved the redaction key out of {directory}/ to {target}: keys no longer travel with recordings")


def _read(path: Path, what: str) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return "\0"  # not hex: refused by the caller with the file's name
    except OSError as e:
        raise RedactionKeyError(f"{path}: cannot read the {what}: {e.strerror or e}") from e


def _private_dir(directory: Path) -> None:
    """``directory`` (the keys' own) with its parents, and mode 0700 itself and for its parent."""
    try:
        directory.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for level in (directory.parent, directory):
            level.mkdir(mode=0o700, exist_ok=True)
            if stat.S_IMODE(level.stat().st_mode) & 0o077:
                level.chmod(0o700)  # ours: others have no business listing or adding keys
    except OSError as e:
        raise RedactionKeyError(f"{directory}: cannot create the redaction key directory: {e.strerror or e}") from e


def _write_once(path: Path, text: str, mode: int, what: str) -> None:
    """``path`` with ``text``, unless another process creates it first (then theirs stays)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise RedactionKeyError(f"{path}: cannot create the {what}: {e.strerror or e}") from e


def _open_to_others(path: Path) -> bool:
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except OSError:
        return False
