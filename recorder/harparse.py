"""A big HAR's entries parsed in a forked child, so that parsing and converting them run side by side.

ijson building an entry's objects is about 40% of an import's time per entry; the
importer is plain Python (no running event loop, no threads), so it can fork. The child
runs the ijson pass over the file the parent opened and writes each entry as one orjson
line into a pipe; the parent only turns lines back into objects (a fifth of what ijson
costs) and carries on with the conversion while the child parses the next ones.

orjson gives back exactly what ijson's yajl backend built (``FORKS``: only with that one):
yajl refuses integers beyond 64 bits and floats that overflow, and the strings it decodes
are valid UTF-8, so every value round-trips through orjson (ints, floats shortest-exact).

The pipe carries entry lines, then one closing line starting with ``!``: the digest of
the whole file, or the first line of the parse error. A child that dies before it is
``ChildFailed``; a parent that stops early (an error, or the consumer closing the
generator) terminates the child and reaps it: a child is never left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, BinaryIO

import ijson
import orjson

__all__ = ["FORKS", "PARSE_ERRORS", "ChildFailed", "ParseError", "Parsed", "Reader", "child_items", "first_line"]

_BOM = b"\xef\xbb\xbf"  # some Windows tools write one
BUFFER = 1 << 20
_PIPE = 1 << 20  # the kernel's default ceiling for an unprivileged process
_CLOSING = 0x21  # "!": no JSON value starts with it
FORKS = ijson.backend == "yajl2_c"
"""Whether a child may parse: another backend may build values orjson does not give back (inf, big ints)."""
PARSE_ERRORS = (ijson.JSONError, UnicodeDecodeError)
"""What ijson raises for a file that is not JSON (the second for an escaped lone surrogate)."""


class ParseError(Exception):
    """The file is not valid JSON: the first line of the child's parse error."""


class ChildFailed(Exception):
    """The parsing child died, or failed with something other than a parse error."""


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


def child_items(fh: BinaryIO, prefix: str, parsed: Parsed) -> Generator[Any, None, None]:
    """The items at ``prefix`` of the JSON file ``fh`` (read from its start), parsed in a child; then ``parsed``.

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
            code = _child(fh, prefix, write_end)
        finally:
            os._exit(code)  # never the parent's code after this, nor its exit handlers
    os.close(write_end)
    reaped = False
    try:
        with os.fdopen(read_end, "rb", buffering=BUFFER) as pipe:
            loads = orjson.loads
            for line in pipe:
                if line[0] != _CLOSING:
                    yield loads(line)
                else:
                    closing = orjson.loads(line[1:])
                    _reap(pid)
                    reaped = True
                    if "error" in closing:
                        raise ParseError(closing["error"])
                    if "failed" in closing:
                        raise ChildFailed(f"the HAR parser failed: {closing['failed']}")
                    parsed.digest = str(closing["digest"])
                    return
        status = _reap(pid)
        reaped = True
        raise ChildFailed(f"the HAR parser process {_death(status)} before the end of the file")
    finally:
        if not reaped:
            _terminate(pid)


def _child(fh: BinaryIO, prefix: str, write_end: int) -> int:  # pragma: no cover - runs in the child
    """Parse and send everything; the exit status."""
    # The parent's Ctrl-C handling is the parent's: here an interrupt just ends the process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with os.fdopen(write_end, "wb", buffering=BUFFER) as pipe:
            try:
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE)  # fewer switches between the two
            except OSError:
                pass
            reader = Reader(fh)
            dumps, write = orjson.dumps, pipe.write
            try:
                for item in ijson.items(reader, prefix, use_float=True):
                    write(dumps(item))
                    write(b"\n")
                closing: dict[str, str] = {"digest": reader.digest()}
            except PARSE_ERRORS as e:
                closing = {"error": first_line(e)}
            except Exception as e:
                closing = {"failed": first_line(e)}
            write(b"!" + orjson.dumps(closing) + b"\n")
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
