"""A big HAR's entries parsed in a forked child, so that parsing and converting them run side by side.

ijson building an entry's objects, then the entry made into plain data, are about 60% of
an import's time per entry; the importer is plain Python (no running event loop, no
threads), so it can fork. The child runs the ijson pass over the file the parent opened
and the caller's ``convert`` on each entry, and pickles the result into a pipe; the
parent only unpickles (a tenth of what the child spent) and carries on with the rest
(redaction, sessions, journal) while the child parses the next ones. The child is a fork
of the parent: ``convert`` is the parent's own, configured, function.

Pickle rather than JSON lines: what ``convert`` makes (tuples, bytes bodies) comes back
exactly, whatever ijson backend built the entry, and reading it back costs less.

The pipe carries one pickle per entry, then a ``_Closing``: the digest of the whole file,
or the first line of the parse error. A child that dies before it is ``ChildFailed``; a
parent that stops early (an error, or the consumer closing the generator) terminates the
child and reaps it: a child is never left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import signal
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple

import ijson

from traffic_replay.errors import HarParserFailed, HarSyntaxError

__all__ = ["CHUNK", "PARSE_ERRORS", "Parsed", "Reader", "child_items", "first_line"]

_BOM = b"\xef\xbb\xbf"  # some Windows tools write one
BUFFER = 1 << 20
CHUNK = 4 << 20
"""Bytes ijson reads at a time. yajl's C backend copies a value that spans reads again at each read: a body of
50 MB in 64 kB reads (ijson's default) takes half a minute to parse, in 4 MB reads a second."""
_PIPE = 1 << 20  # the kernel's default ceiling for an unprivileged process
PARSE_ERRORS = (ijson.JSONError, UnicodeDecodeError)
"""What ijson raises for a file that is not JSON (the second for an escaped lone surrogate)."""


class _Closing(NamedTuple):
    """The child's last word: no item can be one (its class is this module's own)."""

    digest: str = ""
    error: str | None = None
    """The parse error's first line."""
    failed: str | None = None
    """Anything else that stopped the child."""


class Reader:
    """The file as ijson reads it: hashed as it is read (the digest of the whole file), a leading BOM dropped."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self._started = False

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.sha.update(data)
        if not self._started and data:
            self._started = True
            data = data.removeprefix(_BOM)
        return data

    def digest(self) -> str:
        """sha256 of the whole file (what ijson left unread included)."""
        while self.read(BUFFER):
            pass
        return self.sha.hexdigest()


def first_line(error: BaseException) -> str:
    # yajl's messages point at the spot over three lines: the first says what is wrong.
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@dataclass
class Parsed:
    digest: str = ""
    """sha256 of the whole file, once every item is read."""


def child_items(fh: BinaryIO, prefix: str, parsed: Parsed,
                convert: Callable[[Any], Any]) -> Generator[Any, None, None]:
    """``convert`` of each item at ``prefix`` of the JSON file ``fh`` (from its start), made in a child.

    ``parsed`` holds the file's digest once every item is read.

    Raises ``ParseError`` where ijson would raise one of ``PARSE_ERRORS``, after the items before it.
    """
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child: measured through the parent
        code = 1
        try:
            os.close(read_end)
            code = _child(fh, prefix, convert, write_end)
        finally:
            os._exit(code)  # never the parent's code after this, nor its exit handlers
    os.close(write_end)
    reaped = False
    try:
        with os.fdopen(read_end, "rb", buffering=BUFFER) as pipe:
            load = pickle.load  # an unpickler per item, as a pickler per item: their memos must agree
            while True:
                try:
                    item = load(pipe)
                except EOFError:
                    break
                if type(item) is not _Closing:
                    yield item
                    continue
                _reap(pid)
                reaped = True
                if item.error is not None:
                    raise HarSyntaxError(item.error)
                if item.failed is not None:
                    raise HarParserFailed(f"the HAR parser failed: {item.failed}")
                parsed.digest = item.digest
                return
        status = _reap(pid)
        reaped = True
        raise HarParserFailed(f"the HAR parser process {_death(status)} before the end of the file")
    finally:
        if not reaped:
            _terminate(pid)


def _child(fh: BinaryIO, prefix: str, convert: Callable[[Any], Any],
           write_end: int) -> int:  # pragma: no cover - runs in the child
    """Parse, convert and send everything; the exit status."""
    # The parent's Ctrl-C handling is the parent's: here an interrupt just ends the process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with os.fdopen(write_end, "wb", buffering=BUFFER) as pipe:
            try:
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE)  # fewer switches between the two
            except OSError:
                pass
            pickler = pickle.Pickler(pipe, pickle.HIGHEST_PROTOCOL)
            dump, forget = pickler.dump, pickler.clear_memo  # each item on its own: a memo would only grow
            reader = Reader(fh)
            try:
                for item in ijson.items(reader, prefix, use_float=True, buf_size=CHUNK):
                    dump(convert(item))
                    forget()
                closing = _Closing(reader.digest())
            except PARSE_ERRORS as e:
                closing = _Closing(error=first_line(e))
            except Exception as e:
                closing = _Closing(failed=first_line(e))
            dump(closing)
        return 0
    except BrokenPipeError:
        return 0  # the parent stopped reading: it wants no more
    except BaseException:
        return 1


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0  # already reaped (by a SIGCHLD handler someone installed)


def _terminate(pid: int) -> None:
    """Stop our own child (its PID, nothing else) and reap it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _reap(pid)


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
