"""The crash journal: every finished exchange on disk as it completes, and its recovery.

A recorder appends one orjson line per exchange to ``DIR/.journal/<run>.jsonl`` with the
id of the session it joined and its client, as the sessionizer saw it (after
filters and redaction: no secret reaches the journal that would not reach a session
file). Each line goes to the kernel with one ``write()`` as the flow finishes, so a
killed process (``kill -9``, OOM) loses nothing it had finished; only a power loss can
take what the kernel had not flushed yet, which ``sync()`` bounds (the recorder calls
it every ``journal_fsync`` seconds, and on close).

When two open sessions merge (a cookie key adopting the requests sent before the cookie
existed), a ``{"m": absorbed, "into": survivor}`` line says so. When a session file has
been written (atomically), a ``{"w": id}`` line marks its exchanges as no longer needed;
once every session of a journal is written, the journal is deleted and a new one started,
so the journal holds the open sessions, not the whole recording.

The journal is also what keeps memory flat however long a session runs: while a session
is open, the sessionizer holds a ``Spilled`` per exchange (its timing and where its line
is), not the exchange with its headers and bodies; the line is read back when the
session is written. A line is ``{"s": session, "c": client, "t": [started, request_end,
finished], "x": request}``, ``x`` being the session file's request without its timing
(``recorder.records.request_fields``), serialized once: the session file's request line
is those bytes read back behind the timing, never parsed again. (Lines of version 1
journals, with the timing inside ``x``, are still read.)

A running recorder holds an exclusive ``flock`` on its journal, which the kernel drops
when the process dies: ``recover`` takes over any unlocked journal, writes each session
that has no file yet (grouped exactly as the live sessionizer had grouped it: by the
session id on each line) and deletes the journal. Recovery is idempotent: a session id
names its file, so recovering twice never duplicates one.

Pure I/O, no mitmproxy: tests drive it directly.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recorder.records import Exchange, exchange_from_fields, request_fields, request_line, spliced, timing, validated
from recorder.sessionizer import ClientKey
from recorder.writer import default_head, write_exchanges
from traffic_replay.errors import JournalError, RecordingError, report_error

JOURNAL_DIR = ".journal"
JOURNAL_VERSION = 2


def _tuples(value: Any) -> Any:
    """JSON arrays back into the tuples a session key is made of."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode_line(session_id: str, client: ClientKey, exchange: Exchange) -> tuple[bytes, int]:
    """One journal line: the session the exchange joined, its client, and the exchange; and where its ``x`` is."""
    head = orjson.dumps({"s": session_id, "c": client,
                         "t": (exchange.started, exchange.request_end, exchange.finished)})[:-1] + b',"x":'
    return head + orjson.dumps(request_fields(exchange)) + b"}\n", len(head)


def decode_exchange(entry: dict[str, Any]) -> Exchange:
    """An exchange from its journal line (plain data: the recorder wrote it; recovery validates it)."""
    fields = entry["x"]
    if "t" not in entry:  # a version 1 line: the timing inside the exchange
        fields = dict(fields)
        return exchange_from_fields([fields.pop("started"), fields.pop("request_end"), fields.pop("finished")],
                                    fields)
    return exchange_from_fields(entry["t"], fields)


class Spilled:
    """What the sessionizer holds for an exchange of an open session: its timing, and where the rest is.

    Until its line is in the journal (or if that failed) it holds the exchange itself.
    """

    __slots__ = ("started", "finished", "exchange", "journal", "offset", "length")

    def __init__(self, exchange: Exchange) -> None:
        self.started, self.finished = exchange.started, exchange.finished
        self.exchange: Exchange | None = exchange
        self.journal: Journal | None = None
        self.offset = self.length = 0

    def spilled(self, journal: Journal, where: tuple[int, int]) -> None:
        self.journal, (self.offset, self.length), self.exchange = journal, where, None

    def line(self, t0: float) -> bytes:
        """The exchange's request line in a session file that starts at ``t0``."""
        if self.exchange is not None:
            return request_line(self.exchange, t0)
        assert self.journal is not None
        return spliced(*timing(self.started, self.finished, t0), self.journal.read(self.offset, self.length))


class Journal:
    """The append-only journal of one running recorder, in ``directory/.journal``."""

    def __init__(self, directory: Path, fsync_interval: float = 1.0, batch: int = 0) -> None:
        self.folder = directory / JOURNAL_DIR
        self.fsync_interval = fsync_interval
        self.batch = batch  # bytes held for one write(): an import's, whose input outlives a crash; 0 for a recording
        self._held = bytearray()
        self.path: Path | None = None
        self._fd = -1
        self._read_fd = -1
        self._size = 0
        self._pending: set[str] = set()  # sessions with a line here and no file yet
        self._lines = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self._open()

    def _open(self) -> None:
        for attempt in range(3):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                # Unique even for two recorders of one process (mitmproxy may load a script twice).
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
                path = self.folder / name
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
                break
            except FileNotFoundError as e:
                if attempt == 2:  # another recorder's close removed the empty folder in between: make it again
                    raise JournalError(f"{self.folder}: cannot create the crash journal: {e.strerror or e}") from e
            except OSError as e:
                raise JournalError(f"{self.folder}: cannot create the crash journal: {e.strerror or e}") from e
        # Held until we close (or die): recovery leaves a locked journal to its live owner.
        # Never blocking: the file is new, and a wait here would freeze mitmproxy's event loop.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise JournalError(f"{path}: cannot lock the crash journal: {e.strerror or e}") from e
        self._fd, self.path, self._size = fd, path, 0
        self._write(orjson.dumps({"journal": JOURNAL_VERSION, "pid": os.getpid(), "started": time.time()}) + b"\n")
        self._lines = 0

    def _write(self, data: bytes) -> None:
        self._size += len(data)  # we are the only writer (flock): our count is the file's size (held bytes too)
        if not self.batch:
            self._put(data)
            return
        self._held += data
        if len(self._held) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            data, self._held = self._held, bytearray()
            self._put(data)

    def _put(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self._size = os.fstat(self._fd).st_size if self._fd >= 0 else 0
            raise JournalError(f"{self.path}: cannot write the crash journal: {e.strerror or e}") from e
        self._dirty = True
        if self.fsync_interval == 0:
            self.sync()

    def append(self, session_id: str, client: ClientKey, exchange: Exchange) -> tuple[int, int]:
        """Journal one finished exchange; return where its request fields are (offset, length).

        Raises ``JournalError`` if the line is not on its way to disk.
        """
        line, start = encode_line(session_id, client, exchange)
        offset = self._size + start
        self._write(line)
        self._pending.add(session_id)
        self._lines += 1
        return offset, len(line) - start - 2

    def read(self, offset: int, length: int) -> bytes:
        """The bytes at ``offset`` (an exchange's request fields: its session is being written)."""
        self._flush()
        try:
            if self._read_fd < 0:
                assert self.path is not None
                self._read_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._read_fd, length, offset)
        except OSError as e:
            raise JournalError(f"{self.path}: cannot read the crash journal back: {e.strerror or e}") from e
        if len(data) != length:
            raise JournalError(f"{self.path}: the crash journal is shorter than written (truncated by someone else?)")
        return data

    def merged(self, absorbed: str, into: str) -> None:
        """Session ``absorbed`` is now part of ``into``: its lines belong to ``into``'s file."""
        if absorbed in self._pending:
            self._write(orjson.dumps({"m": absorbed, "into": into}) + b"\n")
            self._pending.discard(absorbed)
            self._pending.add(into)

    def written(self, session_id: str) -> None:
        """The session's file is written: its lines are no longer needed."""
        if session_id not in self._pending:
            return
        self._write(orjson.dumps({"w": session_id}) + b"\n")
        self._pending.discard(session_id)
        if not self._pending and self._lines:
            self._rotate()

    def _rotate(self) -> None:
        # Every session of this journal has its file: start afresh rather than let it grow.
        old = self.path
        self._close_fd()
        if old is not None:
            old.unlink(missing_ok=True)
        self._open()

    def sync(self) -> None:
        """fsync if anything was written since the last one (power-loss safety, not crash safety)."""
        self._flush()
        if self._dirty and self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as e:
                raise JournalError(f"{self.path}: cannot sync the crash journal: {e.strerror or e}") from e
            self._dirty = False
        self._last_sync = time.monotonic()

    def sync_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_sync >= self.fsync_interval

    @property
    def pending(self) -> int:
        """Sessions journaled whose file is not written yet."""
        return len(self._pending)

    def close(self) -> None:
        """Close; delete the journal if every session it holds was written, else keep it for recovery."""
        if self._fd < 0:
            return
        path, keep = self.path, bool(self._pending)
        self.sync()
        if not keep and path is not None:
            path.unlink(missing_ok=True)  # unlinked while still locked: no recoverer can race us
        self._close_fd()
        if not keep:
            self._tidy()

    def discard(self) -> None:
        """Close and delete the journal, whatever it holds (its sessions are not wanted)."""
        if self.path is not None and self._fd >= 0:
            self.path.unlink(missing_ok=True)  # while still locked, as close() does
        self._close_fd()
        self._tidy()

    def _tidy(self) -> None:
        """Remove the journal folder if nothing is left in it: no empty ``.journal/`` stays behind."""
        try:
            self.folder.rmdir()
        except OSError:
            pass  # not empty (another recorder's journal, one kept for recovery) or already gone

    def _close_fd(self) -> None:
        self._held = bytearray()  # close() flushed them (its sync); discard() and rotation do not want them
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1


# --- recovery ----------------------------------------------------------------------------

@dataclass
class Recovered:
    """What ``recover`` did: sessions written, exchanges restored, journals read, problems."""

    sessions: list[Path] = field(default_factory=list)
    exchanges: int = 0
    journals: int = 0
    skipped_written: int = 0
    damaged_lines: int = 0


@dataclass
class JournalContents:
    """What a journal holds: exchanges per session id (journal order), clients, merges, marks."""

    exchanges: dict[str, list[Exchange]] = field(default_factory=dict)
    clients: dict[str, list[ClientKey]] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)
    damaged: int = 0

    def survivor(self, session_id: str) -> str:
        seen = {session_id}
        while (session_id := self.merged_into.get(session_id, session_id)) not in seen:
            seen.add(session_id)
        return session_id

    def sessions(self) -> dict[str, tuple[ClientKey, list[Exchange]]]:
        """Each surviving session id with its client (of its earliest request) and exchanges."""
        grouped: dict[str, list[tuple[ClientKey, Exchange]]] = {}
        for sid, exchanges in self.exchanges.items():
            grouped.setdefault(self.survivor(sid), []).extend(zip(self.clients[sid], exchanges, strict=True))
        return {sid: (min(pairs, key=lambda p: p[1].started)[0], [x for _, x in pairs])
                for sid, pairs in grouped.items()}


def read_journal(path: Path) -> JournalContents:
    """Parse a journal; a line cut short by the crash (the last one, at worst) is counted, not fatal."""
    found = JournalContents()
    for line in _lines(path):
        try:
            entry = orjson.loads(line)
            if "x" in entry:
                # Validated here, at recovery: a damaged line must not make a bad session file.
                exchange = validated(decode_exchange(entry))
                client = _tuples(entry["c"])
                found.exchanges.setdefault(entry["s"], []).append(exchange)
                found.clients.setdefault(entry["s"], []).append(client)
            elif "w" in entry:
                found.written.add(entry["w"])
            elif "m" in entry:
                found.merged_into[entry["m"]] = entry["into"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            found.damaged += 1
    return found


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def recover(directory: Path, write: Callable[[str, ClientKey, list[Exchange]], Path] | None = None) -> Recovered:
    """Write the unwritten sessions of every journal in ``directory`` that no live recorder holds.

    ``write`` writes one session from its id, client and exchanges (default: atomically into ``directory``).
    """
    report = Recovered()
    folder = directory / JOURNAL_DIR
    if not folder.is_dir():
        return report
    save = write or (lambda sid, client, exchanges: write_sorted(directory, sid, client, exchanges))
    for path in sorted(folder.glob("*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # rotated away meanwhile
        except OSError as e:
            raise JournalError(f"{path}: cannot read the crash journal: {e.strerror or e}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live recorder writes this one
            if not path.exists():
                continue  # its owner deleted it after we opened it
            contents = read_journal(path)
            report.journals += 1
            report.damaged_lines += contents.damaged
            for sid, (client, exchanges) in contents.sessions().items():
                if sid in contents.written or (directory / f"{sid}.json").exists():
                    report.skipped_written += 1
                    continue
                try:
                    report.sessions.append(save(sid, client, exchanges))
                except OSError as e:
                    raise JournalError(f"{directory}: cannot write recovered session {sid}: "
                                       f"{e.strerror or e}") from e
                report.exchanges += len(exchanges)
            path.unlink()
        finally:
            os.close(fd)
    return report


def write_sorted(directory: Path, session_id: str, client: ClientKey, exchanges: list[Exchange]) -> Path:
    """A session file of exchanges held in memory, ordered by request start."""
    ordered = sorted(exchanges, key=lambda x: x.started)
    return write_exchanges(directory, default_head(session_id, client, ordered), ordered)


def describe(report: Recovered, directory: Path) -> str:
    damaged = f", {report.damaged_lines} damaged journal lines skipped" if report.damaged_lines else ""
    return (f"replay: recovered {report.exchanges} requests in {len(report.sessions)} sessions into {directory}/ "
            f"from {report.journals} interrupted recording journal(s){damaged}")


def main(argv: list[str] | None = None) -> int:
    """``python -m recorder.journal DIR``: what ``replay recover DIR`` runs."""
    parser = argparse.ArgumentParser(prog="replay recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    directory: Path = args.directory
    try:
        if not directory.is_dir():
            raise JournalError(f"{directory}: no such directory" if not directory.exists()
                               else f"{directory}: not a directory")
        report = recover(directory)
    except RecordingError as e:
        return report_error(e)
    if not report.journals:
        print(f"replay: nothing to recover in {directory}/ (no interrupted recording)", file=sys.stderr)
    else:
        print(describe(report, directory), file=sys.stderr)
    for path in report.sessions:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
