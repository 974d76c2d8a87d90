"""Reading an input file (a session, rules or data file) without being held up by what it really is."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: Path) -> bytes:
    """The bytes of an input file, or an ``OSError`` whose ``strerror`` says what is wrong.

    Opened without blocking and checked before anything is read: a FIFO named ``x.json``
    would otherwise wait forever for a writer, and a device (``/dev/zero`` behind a
    symlink) would never end. A symlink loop or a missing target fails at the open.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
