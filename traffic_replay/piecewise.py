"""A long session file compressed, and decoded, a run of request lines at a time.

A session of a million requests is a gigabyte of JSON: decoding it whole costs ~12 s and
~1.2 GB before the replay can send its first request, and what its steps need of it is one
request at a time, in order (``replayer.steps`` builds them a run at a time). So a file of
at least ``PIECEWISE_FROM`` request lines in the layout ``format.dump_session`` writes (one
request per line) is compressed with a full flush before every ``LINES_PER_PIECE`` lines:
zlib is then one stream (it decompresses whole as any other) whose pieces can each be
inflated on their own from their offset (the "marks"), ~15 % larger than without the
flushes. ``Requests`` decodes a piece when a request of it is taken, and keeps only that
piece, so a process holds the compressed file and one piece of it, not the decoded session.

What needs the whole session can scan it without decoding it: a placeholder
(``«redacted:…»``) is only in the lines whose bytes have ``redacted`` in them, or an escape
that could spell it (``Requests.placeholder_steps``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import overload

import msgspec

from traffic_replay.format import LINES_HEAD_END, LINES_TAIL, Request, Session
from traffic_replay.sharing import Shared

__all__ = ["LINES_PER_PIECE", "PIECEWISE_FROM", "Requests", "compress", "session"]

LINES_PER_PIECE = 100
"""Request lines per piece: a run of steps (~100 KB of JSON for ours: the flushes then cost ~15 %)."""
PIECEWISE_FROM = 2_000
"""A session of at least this many requests is compressed in pieces; a shorter one is decoded whole quickly."""

_HEAD = msgspec.json.Decoder(Session)
_REQUEST = msgspec.json.Decoder(Request)


def _may_hold_placeholder(text: bytes) -> bool:
    # Two plain searches, not a regex alternation: over 100 MB of pieces 0.07 s against 0.8 s.
    return b"redacted" in text or b"\\u" in text


def compress(raw: bytes, level: int, requests: int) -> tuple[bytes, list[int]]:
    """zlib of a checked session file of ``requests`` requests, and for a long one in the line layout the
    offset of each piece in it: the head line first, then ``LINES_PER_PIECE`` request lines each (no
    offsets: compressed whole)."""
    first = raw.find(b"\n")
    if (requests < PIECEWISE_FROM or first < 0 or not raw.endswith(LINES_TAIL)
            or not raw[:first].endswith(LINES_HEAD_END)):
        return zlib.compress(raw, level), []
    cuts, at, line = [0, first + 1], first + 1, 0
    while (newline := raw.find(b"\n", at)) != -1:
        line += 1
        at = newline + 1
        if line % LINES_PER_PIECE == 0:
            cuts.append(at)
    if line != requests + 1:  # (one request a line, and the tail's "]}": a layout the pieces' count holds for)
        return zlib.compress(raw, level), []
    if cuts[-1] >= len(raw) - len(LINES_TAIL) + 1:  # (a last piece of only the tail: no requests in it)
        cuts.pop()
    view, compressor, out, marks, size = memoryview(raw), zlib.compressobj(level), [], [], 0
    for start, end in zip(cuts, [*cuts[1:], len(raw)], strict=True):
        marks.append(size)
        for chunk in (compressor.compress(view[start:end]), compressor.flush(zlib.Z_FULL_FLUSH)):
            out.append(chunk)
            size += len(chunk)
    out.append(compressor.flush())
    return b"".join(out), marks


def session(data: memoryview, marks: Sequence[int], count: int, shared: Shared) -> Session:
    """The session of a file compressed in pieces, its requests decoded as they are taken (``Requests``)."""
    requests = Requests(data, marks, count, shared)
    head = _HEAD.decode(requests.piece(0).rstrip(b"\n") + b"]}")
    msgspec.structs.force_setattr(head, "requests", requests)
    return head


class Requests(Sequence[Request]):
    """A session's requests, each decoded (and shared, ``sharing.Shared``) when it is taken, not kept."""

    __slots__ = ("_data", "_marks", "_count", "_shared", "_at", "_lines")

    def __init__(self, data: memoryview, marks: Sequence[int], count: int, shared: Shared) -> None:
        self._data = data
        self._marks = marks
        self._count = count
        self._shared = shared
        self._at = 0  # the piece whose lines are held (0: none; the head is piece 0)
        self._lines: list[bytes] = []

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Request: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Request]: ...
    def __getitem__(self, index: int | slice) -> Request | Sequence[Request]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("request index out of range")
        piece, line = divmod(index, LINES_PER_PIECE)
        if piece + 1 != self._at:
            self._lines, self._at = self._split(piece + 1), piece + 1
        return self._shared.request(_REQUEST.decode(self._lines[line]), index)

    def __iter__(self) -> Iterator[Request]:
        return (self[i] for i in range(self._count))

    def piece(self, number: int) -> bytes:
        """The JSON of piece ``number`` (0: the head line)."""
        data, marks = self._data, self._marks
        end = marks[number + 1] if number + 1 < len(marks) else len(data)
        # The first piece has the stream's header; the others start at a full flush, as raw deflate.
        inflate = zlib.decompressobj() if number == 0 else zlib.decompressobj(-zlib.MAX_WBITS)
        return inflate.decompress(data[marks[number]:end])

    def _split(self, number: int, text: bytes | None = None) -> list[bytes]:
        lines = (self.piece(number) if text is None else text).split(b"\n")
        wanted = min(LINES_PER_PIECE, self._count - (number - 1) * LINES_PER_PIECE)
        # Every request line ends with a comma but the session's last.
        return [line[:-1] if line.endswith(b",") else line for line in lines[:wanted]]

    def placeholder_steps(self) -> list[int]:
        """The requests (0-based) whose JSON may hold a placeholder, sent or answered; the others hold none."""
        found: list[int] = []
        for number in range(1, len(self._marks)):
            text = self.piece(number)
            if _may_hold_placeholder(text):
                first = (number - 1) * LINES_PER_PIECE
                found += [first + n for n, line in enumerate(self._split(number, text))
                          if _may_hold_placeholder(line)]
        return found
