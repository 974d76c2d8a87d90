"""The cache directory: what was worked out of a session file, remembered by the file's content.

A recording does not change between the runs of a load test, so what costs seconds to work
out of its files (what the detector finds in each, ``correlation.cache``; what reading one
finds, ``packing``) is kept under the digest of the file's bytes (``format.file_digest``),
in a folder per kind of entry and per version of the code that made it (the fingerprint of
its source: a changed detector never reads what another one found). By default the
directory is ``$XDG_CACHE_HOME/traffic-replay``, else ``~/.cache/traffic-replay``.

Anything the cache cannot do (a directory that cannot be written, an entry that cannot be
read) is a miss: the caller works the entry out again, and the cache never fails a command.
Entries hold what the session files hold (the values carried over), so the directory is
made readable by its owner only. Nothing prunes it; deleting it at any time is safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["CacheDir", "default_directory", "source_fingerprint"]

logger = logging.getLogger(__name__)


def default_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the cache is unless ``--cache-dir`` says otherwise (the XDG base directory convention)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "traffic-replay"


def source_fingerprint(files: Iterable[Path]) -> str:
    """A digest of these source files (names and bytes): the version of the code an entry was made by."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


class CacheDir:
    """The entries of one cache directory (None: no cache, every ``get`` a miss and every ``put`` dropped)."""

    __slots__ = ("root",)

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def entry(self, kind: str, fingerprint: str, name: str) -> Path | None:
        """Where an entry is kept, or None without a cache."""
        return None if self.root is None else self.root / kind / fingerprint / name

    @staticmethod
    def get(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as e:
            if not isinstance(e, FileNotFoundError):
                logger.debug(f"{path}: not used ({e})")
            return None

    def put(self, path: Path | None, data: bytes) -> None:
        if path is None or self.root is None:
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # (the root is what keeps others out)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written aside and renamed: a reader (another process of the same run) sees all of it or none.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as e:
            logger.debug(f"{path}: not kept ({e})")
