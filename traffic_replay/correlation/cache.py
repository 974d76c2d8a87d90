"""What the detector found in a session file, remembered by the file's content: the next look at it is a read.

Detection is the cost of a large recording: about a minute for a million requests, paid by
``replay inspect`` and again by every replay before it can prepare a session. Each session
file's ``Analysis`` is kept in the cache directory (``traffic_replay.cachedir``) under the
digest of the file's bytes, in a folder per version of the detector: the fingerprint of its
own source (the correlation package and the session format). An entry that does not decode
or does not fit its session is a miss: the session is analysed again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

import traffic_replay.format as session_format
from traffic_replay.cachedir import CacheDir, default_directory, source_fingerprint
from traffic_replay.correlation import bystep
from traffic_replay.correlation.bystep import ByStep, Indexed, InMemory
from traffic_replay.correlation.detection import Analysis, analyse
from traffic_replay.format import Session
from traffic_replay.piecewise import PIECEWISE_FROM

if TYPE_CHECKING:
    from traffic_replay.settings import Settings

__all__ = ["AnalysisCache", "default_directory"]

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Analysis)


@cache
def fingerprint() -> str:
    """The detector's version: a digest of the source it runs (the correlation package and the session format)."""
    return source_fingerprint([*sorted(Path(__file__).parent.glob("*.py")), Path(session_format.__file__)])


def _fits(analysis: Analysis, steps: int) -> bool:
    """Does every step it names exist in a session of ``steps`` requests? (An entry is trusted no further.)"""
    return (all(0 <= s.step < steps for c in analysis.correlations for s in c.sources)
            and all(0 <= u.step < steps for c in analysis.correlations for u in c.uses)
            and all(0 <= r.step < steps and 0 <= r.source.step < steps for r in analysis.rejected))


class AnalysisCache:
    """``analyse`` of a session, read from the cache when its file was analysed before, else worked out and kept."""

    __slots__ = ("directory", "_store")

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        """None: no cache, every session is analysed."""
        self._store = CacheDir(directory)

    @classmethod
    def of(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> AnalysisCache:
        """The cache the settings ask for (``--cache``, ``--cache-dir``)."""
        return cls((settings.cache_dir or default_directory(environ)) if settings.cache else None)

    def analyse(self, session: Session, file_digest: str | None) -> Analysis:
        if self.directory is None or file_digest is None:
            return analyse(session)
        steps = len(session.requests)
        found = self.remembered(file_digest, steps)
        if found is None:
            found = analyse(session)
            self._store.put(self._entry(file_digest), _ENCODER.encode(found))
            if steps >= PIECEWISE_FROM:  # (what a replay of it decoded a piece at a time reads: ``by_step``)
                self._store.put(self._by_step_entry(file_digest), bystep.encode(found.correlations, steps))
        return found

    def by_step(self, file_digest: str, steps: int) -> ByStep | None:
        """The correlations of the file of this digest (of ``steps`` requests) by step, read a block at a
        time when its entry is there (made from the remembered analysis if not), or None if it is not known."""
        path = self._by_step_entry(file_digest)
        if path is None:
            return None
        found = Indexed.open(path, steps)
        if found is None:
            analysis = self.remembered(file_digest, steps)
            if analysis is None:
                return None
            self._store.put(path, bystep.encode(analysis.correlations, steps))
            found = Indexed.open(path, steps)
            if found is None:  # (a cache that cannot be written: the analysis is at hand)
                return InMemory(analysis.correlations)
        return found

    def remembered(self, file_digest: str, steps: int) -> Analysis | None:
        """What was found in the file of this digest (of ``steps`` requests), or None if it is not known."""
        path = self._entry(file_digest)
        data = self._store.get(path)
        if path is None or data is None:
            return None
        try:
            found = _DECODER.decode(data)
        except (msgspec.MsgspecError, ValueError, TypeError) as e:
            logger.debug(f"{path}: not used ({e})")
            return None
        if not _fits(found, steps):
            logger.debug(f"{path}: not used (names a step the session does not have)")
            return None
        return found

    def _entry(self, file_digest: str) -> Path | None:
        return self._store.entry("analysis", fingerprint(), f"{file_digest}.json")

    def _by_step_entry(self, file_digest: str) -> Path | None:
        return self._store.entry("by-step", fingerprint(), f"{file_digest}.msgpack")
