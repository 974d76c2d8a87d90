"""Opening an input file (a HAR, a flow file, a session, rules or data file) without being held up
by what it really is: one place, so that every loader refuses the same things in the same words."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
_STREAMS = ("a named pipe (FIFO)", "a device")


def open_regular(path: Path, what: str = "a file") -> BinaryIO:
    """``path`` opened for reading if it is a regular file; else an ``OSError`` whose ``strerror``
    says what is wrong in words ("a directory, not ``what``"; ``EINVAL`` for what is no file).

    Opened without blocking and checked on the open file: a FIFO (or a path swapped for one)
    would wait for a writer forever, and a device (``/dev/zero``) never ends.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link loop (too many levels of symbolic links)") from e
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(errno.ENOENT, "a symbolic link to a missing file" if path.is_symlink()
                                    else "no such file") from e
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"{_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, what: str = "a file") -> bytes:
    """The bytes of ``path``, if it is a regular file (``open_regular``'s errors if not)."""
    with open_regular(path, what) as fh:
        return fh.read()


def is_stream(error: OSError) -> bool:
    """Whether ``open_regular`` refused a FIFO or a device: what streams, and could be saved to a file."""
    return error.errno == errno.EINVAL and (error.strerror or "").startswith(_STREAMS)
