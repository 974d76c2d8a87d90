"""Session files written from exchanges, one request line at a time, atomically.

The same file as ``traffic_replay.format.write_session`` of the same session (the head
comes from ``dump_session`` itself, the request lines from ``recorder.records``), but
from exchanges that may be read back one by one (from the crash journal): a session of
a million requests is written without ever being one object tree in memory.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from recorder.records import Exchange, file_bytes, head_bytes, request_line
from recorder.sessionkeys import ClientKey
from traffic_replay.errors import RecordingError
from traffic_replay.format import ClientInfo, Session

__all__ = ["client_head", "default_head", "file_name", "write_exchanges", "write_lines"]

_BUFFER = 1 << 20
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
"""A session id that names a file of the directory itself: the format's id pattern, not hidden, never ``..``."""


def file_name(session_id: str) -> str:
    """``<id>.json``; a ``RecordingError`` for an id that could name anything but a session file in its directory."""
    if not _SAFE_ID.fullmatch(session_id):
        raise RecordingError(f"session id {session_id[:80]!r} cannot name a session file")
    return f"{session_id}.json"


def client_head(session_id: str, client: ClientKey, t0: float) -> Session:
    """A live recording's session, before its requests: named after its client."""
    address, user_agent = client
    agent = user_agent.split(" ", 1)[0] or "unknown client"
    return Session(id=session_id, name=f"{agent} from {address}",
                   client=ClientInfo(address=address, user_agent=user_agent or None),
                   started_at=datetime.fromtimestamp(t0, tz=UTC), requests=[])


def default_head(session_id: str, client: ClientKey, exchanges: list[Exchange]) -> tuple[Session, float]:
    """``client_head`` for exchanges held in memory, with the start time ``t0`` of the earliest."""
    t0 = min(x.started for x in exchanges)
    return client_head(session_id, client, t0), t0


def write_exchanges(directory: Path, head: tuple[Session, float], exchanges: Iterable[Exchange]) -> Path:
    """Write ``<id>.json`` in ``directory`` atomically: ``head`` (session, ``t0``), then ``exchanges`` in order."""
    session, t0 = head
    return write_lines(directory, session, (request_line(x, t0) for x in exchanges))


def write_lines(directory: Path, session: Session, lines: Iterable[bytes]) -> Path:
    """Write ``<id>.json`` in ``directory`` atomically: ``session`` (without requests), then the request lines."""
    target = directory / file_name(session.id)
    fd, tmp = tempfile.mkstemp(prefix=f".{session.id}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=_BUFFER) as fh:
            for piece in file_bytes(head_bytes(session), lines):
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
