"""Recorded sessions as a replay carries them: each one's file, validated and compressed, with its head beside it.

A replay decodes a session only when it prepares it (``replayer.loading``: a large
recording is prepared as it is used). Before its first request it needs only each
session's *head* (name, weight, start, how many requests) and what is known of all
sessions together: the primary host, the secrets they send, the endpoints a threshold may
name. So the process that reads the recordings (``replay run``) reads each file once,
validates it as every loading path does (the same one-line errors), works those out in the
same pass, and keeps the file's own bytes compressed (zlib level 1: ~20x for a recording,
0.2 ms for a session of 100 requests), never encoded again. The payload carries them as
they are, and a process that replays them holds a twentieth of the recording's JSON until
each session is prepared, instead of the decoded objects (~1.2 KiB per request).

A recording large enough (``FORK_FROM_BYTES``) is read by two forked processes, its files
shared out between them in runs of about as many bytes, as ``replay inspect`` analyses its
sessions (``traffic_replay.fanout``): never from the replay process itself, whose gevent hub
does not survive a fork.
"""

from __future__ import annotations

import multiprocessing
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import overload

import msgspec

from traffic_replay import piecewise
from traffic_replay.correlation.secrets import Secret
from traffic_replay.errors import RecordingError, SessionFileError
from traffic_replay.fanout import cores
from traffic_replay.format import (
    Session,
    decode_session,
    dump_session,
    file_digest,
    refuse_unusable,
    session_files,
    uncollected,
)
from traffic_replay.readings import Look, read_file
from traffic_replay.recorded import Durations
from traffic_replay.sharing import Shared

__all__ = ["FORK_FROM_BYTES", "Look", "Packed", "Packing", "Probing", "Recorded", "Unpacker", "pack", "read_packed"]

LEVEL = 1
"""zlib level: a recording repeats itself so much that level 1 still shrinks it ~20x, at half level 6's time."""

FORK_FROM_BYTES = 16 << 20
"""Session files of this many bytes in all (~15,000 requests) or more are read by two processes."""


class Packed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One session as a replay carries it: its head, and its file's JSON compressed (``Unpacker`` decodes it)."""

    id: str
    name: str
    weight: float
    start: float
    """Seconds after the first session of its recording began (the timeline's schedule)."""
    requests: int
    """How many requests it has (a session without any is never replayed)."""
    data: memoryview
    """zlib of the session file as it was read and validated (a view: of the payload, where it was received)."""
    digest: str
    """``format.file_digest`` of the file: what the cache knows its analysis by, without its bytes."""
    marks: list[int]
    """For a long session, where each piece of ``data`` starts (``traffic_replay.piecewise``); else empty."""


def pack(sessions: Sequence[Session]) -> list[Packed]:
    """Sessions made in code, packed as if read from the files ``format.write_session`` writes."""
    return _packed([(s.id, s.name, s.weight, s.started_at, len(s.requests),
                     *piecewise.compress(raw, LEVEL, len(s.requests)), file_digest(raw))
                    for s in sessions for raw in [dump_session(s)]])


_Read = tuple[str, str, float, datetime, int, bytes, list[int], str]
"""A session as it was read: its head, its start as recorded, its packed bytes (a memoryview does not pickle)
with their marks, and its file's digest."""


def _packed(read: list[_Read]) -> list[Packed]:
    # Each start after the first start of a session that is replayed, as ``replayer.prepared.starts`` counts.
    first = min((start for _, _, _, start, requests, *_ in read if requests), default=None)
    return [Packed(i, name, weight, (start - first).total_seconds() if first is not None and requests else 0.0,
                   requests, memoryview(data), digest, marks)
            for i, name, weight, start, requests, data, marks, digest in read]


class Unpacker:
    """Decodes packed sessions, each holding what repeats across them once, as a loaded recording does.

    What it decodes was validated where it was read; decoding it again checks it again, and
    what fails then (a payload of another traffic-replay) is a ``msgspec.MsgspecError`` or
    a ``ValueError``.
    """

    __slots__ = ("shared",)

    def __init__(self) -> None:
        self.shared = Shared()

    def __call__(self, packed: Packed) -> Session:
        return self.read(packed)[0]

    def piecewise(self, packed: Packed) -> Session | None:
        """The session with its requests decoded as they are taken, if it was packed in pieces; else None."""
        return piecewise.session(packed.data, packed.marks, packed.requests, self.shared) if packed.marks else None

    def read(self, packed: Packed) -> tuple[Session, bytes]:
        """The session, and the bytes of its file (what ``format.file_digest`` knows it by)."""
        raw = zlib.decompress(packed.data)
        with uncollected(freeze=False):
            return decode_session(raw, self.shared), raw


class Recorded(Sequence[Session]):
    """Packed sessions seen as sessions, each decoded when it is taken and not kept: for what reads a few
    (the preflight check) or all of them once (the recorded latency in the summary).

    Each is decoded on its own (an ``Unpacker`` each): sharing across them would keep every
    distinct header pair of the recording alive until the last one is read.
    """

    __slots__ = ("_packed",)

    def __init__(self, packed: Sequence[Packed]) -> None:
        self._packed = packed

    def __len__(self) -> int:
        return len(self._packed)

    @overload
    def __getitem__(self, index: int) -> Session: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Session]: ...
    def __getitem__(self, index: int | slice) -> Session | Sequence[Session]:
        if isinstance(index, slice):
            return Recorded(self._packed[index])
        return Unpacker()(self._packed[index])

    def __iter__(self) -> Iterator[Session]:
        return (Unpacker()(p) for p in self._packed)


@dataclass(frozen=True, slots=True)
class Probing:
    """What the preflight check needs of a recording, worked out as it was read (``Look.probe``)."""

    candidates: list[int]
    """The sessions (by index) with a request to the primary host that may be probed, in order."""
    any_get: bool
    """Whether any request is a GET or HEAD to the primary host."""


@dataclass(frozen=True, slots=True)
class Packing:
    """What one pass over a recordings directory found: its sessions packed, and what all of them say together."""

    sessions: list[Packed]
    skipped: list[SessionFileError]
    primary: str | None
    """The recorded ``host:port`` most requests went to (``hosts.primary_host``)."""
    secrets: list[Secret]
    """What ``correlation.secrets.needed_secrets`` finds in the sessions, in their order."""
    endpoints: set[tuple[str, str]]
    """``recorded.recorded_endpoints`` of the sessions, when ``Look.namer`` asked for them."""
    probing: Probing | None
    """When ``Look.probe`` asked for it."""
    durations: Durations = field(default_factory=dict)
    """``recorded.add_durations`` of the sessions, when ``Look.timed`` asked for them."""


# What reading some of the files found (in a child, the bad files as (path, detail): an exception with
# arguments of its own does not pickle). The host counts keep their first-seen order, which breaks a tie.
_Part = tuple[list[_Read], list[tuple[str, str]], Counter[str], list[Secret], set[tuple[str, str]], set[str],
              list[frozenset[str]], Durations]


def _read_part(files: Sequence[Path], look: Look) -> _Part:
    packed: list[_Read] = []
    bad: list[tuple[str, str]] = []
    hosts = Counter[str]()
    secrets: list[Secret] = []
    endpoints: set[tuple[str, str]] = set()
    gets: set[str] = set()
    maybe: list[frozenset[str]] = []
    durations: Durations = {}
    shared = Shared()  # (here only to check each header pair once: what it holds goes with the session)
    with uncollected(freeze=False):
        for path in files:
            try:
                found, raw, digest = read_file(path, look, shared)
            except SessionFileError as e:
                bad.append((str(e.path), e.detail))
                continue
            hosts.update(dict(found.hosts))
            secrets += found.needed()
            if look.namer is not None:
                endpoints.update(found.endpoints or ())
            if look.timed is not None:
                found.add_durations(durations)
            if look.probe is not None and found.probe is not None:
                gets.update(found.probe[0])
                maybe.append(frozenset(found.probe[1]))
            packed.append((found.id, found.name, found.weight, found.started_at, found.requests,
                           *piecewise.compress(raw, LEVEL, found.requests), digest))
    return packed, bad, hosts, secrets, endpoints, gets, maybe, durations


_work: tuple[Callable[[Sequence[Path], Look], _Part], Look] | None = None


def _in_child(files: Sequence[Path]) -> _Part:
    assert _work is not None
    read, look = _work
    return read(files, look)


def _shares(files: list[Path], sizes: list[int], count: int) -> list[list[Path]]:
    """``files`` cut in order into ``count`` runs of about as many bytes each."""
    runs: list[list[Path]] = []
    run: list[Path] = []
    total, filled = sum(sizes), 0
    for path, size in zip(files, sizes, strict=True):
        run.append(path)
        filled += size
        if filled >= total * (len(runs) + 1) / count and len(runs) < count - 1:
            runs.append(run)
            run = []
    return [*runs, run] if run else runs


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # (reading it says why, in its own words)
        return 0


def read_packed(directory: Path, look: Look, skip_bad: bool = False, fork: bool = False) -> Packing:
    """Every session of ``directory``, validated and packed, with what ``look`` asks of each; the errors of
    ``format.read_recordings`` for the same directory, in the same order. ``fork``: over two processes
    when the files are big enough to be worth it (never from a process that runs gevent)."""
    files = session_files(directory)
    if not files:
        raise RecordingError(f"{directory}: no session files (*.json) in this directory")
    sizes = [_size(p) for p in files]
    processes = min(cores(), 2, len(files)) if fork and sum(sizes) >= FORK_FROM_BYTES else 1
    if processes < 2:
        parts = [_read_part(files, look)]
    else:
        global _work
        _work = (_read_part, look)
        try:
            # Runs of several files in order (not one each: a result per file would cost its own pickling),
            # a few per process, so that one with more of the work does not keep the other waiting long.
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                parts = pool.map(_in_child, _shares(files, sizes, processes * 4), chunksize=1)
        finally:
            _work = None
    read = [session for part in parts for session in part[0]]
    skipped = [SessionFileError(path, detail) for part in parts for path, detail in part[1]]
    refuse_unusable(directory, skipped, [requests for _, _, _, _, requests, *_ in read], skip_bad)
    hosts = Counter[str]()
    for part in parts:
        hosts.update(part[2])
    primary = hosts.most_common(1)[0][0] if hosts else None
    probing = None
    if look.probe is not None:
        maybe = [hosts for part in parts for hosts in part[6]]
        probing = Probing([i for i, probed in enumerate(maybe) if primary in probed],
                          any(primary in part[5] for part in parts))
    durations = parts[0][7]
    for part in parts[1:]:
        for key, values in part[7].items():
            durations.setdefault(key, []).extend(values)
    return Packing(_packed(read), skipped, primary, [secret for part in parts for secret in part[3]],
                   set().union(*(part[4] for part in parts)), probing, durations)
