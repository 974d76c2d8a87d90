"""What the detector found in a session file, remembered by the file's content: the next look at it is a read.

Detection is the cost of a large recording: about a minute for a million requests, paid by
``replay inspect`` and again by every replay before it can prepare a session. A recording
does not change between the runs of a load test, so each session file's ``Analysis`` is
kept in a cache directory (by default ``$XDG_CACHE_HOME/traffic-replay``, else
``~/.cache/traffic-replay``), under the digest of the file's bytes (``format.file_digest``)
and in a folder per version of the detector: the fingerprint of its own source, so that a
changed detector never reads what another one found. Anything the cache cannot do (a directory that
cannot be written, an entry that does not decode or does not fit its session) is a miss:
the session is analysed again, and the cache never fails a command.

The entries hold what the session files hold (the values carried over), so the directory
is made readable by its owner only. Nothing prunes it; deleting it at any time is safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

import traffic_replay.format as session_format
from traffic_replay.correlation.detection import Analysis, analyse
from traffic_replay.format import Session

if TYPE_CHECKING:
    from traffic_replay.settings import Settings

__all__ = ["AnalysisCache", "default_directory"]

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Analysis)


@cache
def fingerprint() -> str:
    """The detector's version: a digest of the source it runs (the correlation package and the session format)."""
    package = Path(__file__).parent
    files = [*sorted(package.glob("*.py")), Path(session_format.__file__)]
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def default_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the cache is unless ``--cache-dir`` says otherwise (the XDG base directory convention)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "traffic-replay"


def _fits(analysis: Analysis, session: Session) -> bool:
    """Does every step it names exist in the session? (An entry is trusted no further than that.)"""
    steps = len(session.requests)
    return (all(0 <= s.step < steps for c in analysis.correlations for s in c.sources)
            and all(0 <= u.step < steps for c in analysis.correlations for u in c.uses)
            and all(0 <= r.step < steps and 0 <= r.source.step < steps for r in analysis.rejected))


class AnalysisCache:
    """``analyse`` of a session, read from the cache when its file was analysed before, else worked out and kept."""

    __slots__ = ("directory",)

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        """None: no cache, every session is analysed."""

    @classmethod
    def of(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> AnalysisCache:
        """The cache the settings ask for (``--cache``, ``--cache-dir``)."""
        return cls((settings.cache_dir or default_directory(environ)) if settings.cache else None)

    def analyse(self, session: Session, file_digest: str | None) -> Analysis:
        if self.directory is None or file_digest is None:
            return analyse(session)
        path = self.directory / "analysis" / fingerprint() / f"{file_digest}.json"
        found = self._read(path, session)
        if found is None:
            found = analyse(session)
            self._write(self.directory, path, found)
        return found

    @staticmethod
    def _read(path: Path, session: Session) -> Analysis | None:
        try:
            found = _DECODER.decode(path.read_bytes())
        except (OSError, msgspec.MsgspecError, ValueError, TypeError) as e:
            if not isinstance(e, FileNotFoundError):
                logger.debug(f"{path}: not used ({e})")
            return None
        if not _fits(found, session):
            logger.debug(f"{path}: not used (names a step the session does not have)")
            return None
        return found

    @staticmethod
    def _write(directory: Path, path: Path, analysis: Analysis) -> None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # (the root is what keeps others out)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written aside and renamed: a reader (another process of the same run) sees all of it or none.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_ENCODER.encode(analysis))
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as e:
            logger.debug(f"{path}: not kept ({e})")
