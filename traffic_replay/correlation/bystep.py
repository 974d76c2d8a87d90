"""A session's correlations by step: what building a run of steps needs, and no more.

The replay builds a session's steps a run at a time (``replayer.steps``); each run needs the
uses and the sources of its own steps, and each variable's value from the start. ``InMemory``
indexes a list of correlations once. ``Indexed`` reads them from a cache entry written for a
long session (``correlation.cache``): a million requests are ~765,000 correlations, ~0.9 KB
each decoded, which a replay held from its first request to its last step built; the entry
keeps each variable's value up front and the rest in blocks of ``BLOCK`` steps, each read
(``os.pread``) and decoded when its run is built.

The entry: 8 bytes (the header's length, little-endian), the header (msgpack: the steps, the
values, where each block is, the digest of all that follows it), the blocks, then every
variable's sources (read only when a dry run's plan names them).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from traffic_replay.correlation.model import Correlation, Encoding, ExtractKind, Source, Use

__all__ = ["BLOCK", "ByStep", "InMemory", "Indexed", "Joined", "Run", "Variables", "encode"]

logger = logging.getLogger(__name__)

BLOCK = 100
"""Steps a block: a run of steps as the replay builds them (``replayer.steps.STEPS_PER_RUN``)."""

Run = tuple[dict[int, list[tuple[int, Use, str]]], dict[int, list[tuple[int, Source]]]]
"""The uses (variable, use, its value) and the sources (variable, source) of a run of steps, by step."""


class ByStep(Protocol):
    """A session's variables (correlations, then secrets) as the step builder reads them."""

    @property
    def values(self) -> tuple[str, ...]:
        """Each variable's recorded value: what it holds before a response gives it a live one."""
        ...

    def __len__(self) -> int: ...

    def at(self, start: int, stop: int) -> Run:
        """The uses and sources of steps ``start`` to ``stop`` (0-based, ``stop`` excluded)."""
        ...

    def variable(self, var: int) -> Correlation:
        """Variable ``var``'s value, sources and rule (not its uses: the steps' patches hold those)."""
        ...


class InMemory:
    """Correlations in a list, indexed by step once; variables numbered from ``first``."""

    __slots__ = ("values", "_uses", "_sources", "_kept", "_first")

    def __init__(self, correlations: Sequence[Correlation], first: int = 0) -> None:
        self._uses: dict[int, list[tuple[int, Use, str]]] = {}
        self._sources: dict[int, list[tuple[int, Source]]] = {}
        for var, c in enumerate(correlations, start=first):
            for use in c.uses:
                self._uses.setdefault(use.step, []).append((var, use, c.value))
            for source in c.sources:
                self._sources.setdefault(source.step, []).append((var, source))
        # (Without their uses: what a report names of a variable outlives the steps' building.)
        self._kept = tuple(Correlation(c.value, c.sources, rule=c.rule) for c in correlations)
        self._first = first
        self.values = tuple(c.value for c in correlations)

    def __len__(self) -> int:
        return len(self._kept)

    def at(self, start: int, stop: int) -> Run:
        uses, sources = self._uses, self._sources
        return ({s: uses[s] for s in range(start, stop) if s in uses},
                {s: sources[s] for s in range(start, stop) if s in sources})

    def variable(self, var: int) -> Correlation:
        return self._kept[var - self._first]


class Joined:
    """Several ``ByStep`` one after the other (a session's correlations, then its secrets)."""

    __slots__ = ("values", "_parts", "_starts")

    def __init__(self, *parts: ByStep) -> None:
        self._parts = parts
        self._starts: list[int] = []
        count = 0
        for part in parts:
            self._starts.append(count)
            count += len(part)
        self.values = tuple(value for part in parts for value in part.values)

    def __len__(self) -> int:
        return len(self.values)

    def at(self, start: int, stop: int) -> Run:
        uses: dict[int, list[tuple[int, Use, str]]] = {}
        sources: dict[int, list[tuple[int, Source]]] = {}
        for part in self._parts:
            part_uses, part_sources = part.at(start, stop)
            for step, found in part_uses.items():
                uses[step] = uses[step] + found if step in uses else found
            for step, located in part_sources.items():
                sources[step] = sources[step] + located if step in sources else located
        return uses, sources

    def variable(self, var: int) -> Correlation:
        for part, first in zip(reversed(self._parts), reversed(self._starts), strict=True):
            if var >= first:
                return part.variable(var)
        raise IndexError(var)


class Variables(Sequence[Correlation]):
    """``ByStep.variable`` as a sequence: what a prepared session names of its variables."""

    __slots__ = ("_of",)

    def __init__(self, of: ByStep) -> None:
        self._of = of

    def __len__(self) -> int:
        return len(self._of)

    def __getitem__(self, var: int) -> Correlation:  # type: ignore[override]  # (no slices: nothing asks)
        if not 0 <= var < len(self._of):
            raise IndexError(var)
        return self._of.variable(var)


_UseRow = tuple[int, int, Literal["path", "header", "body"], str, Encoding, str | None, tuple[int, int] | None,
                str | None]
"""step, variable, place, name, encoding, recorded, span, json_path"""
_SourceRow = tuple[int, int, ExtractKind, str, str, str]
"""step, variable, kind, key, prefix, suffix"""
_Block = tuple[list[_UseRow], list[_SourceRow]]


class _Header(msgspec.Struct, array_like=True, gc=False):
    steps: int
    block: int
    values: list[str]
    blocks: list[tuple[int, int]]
    """(offset after the header, length) of each block."""
    sources: tuple[int, int]
    """Where every variable's sources are: (offset after the header, length)."""
    digest: str
    """SHA-256 of all that follows the header."""


_HEADER = msgspec.msgpack.Decoder(_Header)
_BLOCK = msgspec.msgpack.Decoder(_Block)
_SOURCES = msgspec.msgpack.Decoder(list[list[_SourceRow]])
_ENCODER = msgspec.msgpack.Encoder()


def encode(correlations: Sequence[Correlation], steps: int) -> bytes:
    """The entry of a session of ``steps`` requests and these correlations (each step within it)."""
    blocks: list[_Block] = [([], []) for _ in range((steps + BLOCK - 1) // BLOCK)]
    by_var: list[list[_SourceRow]] = []
    for var, c in enumerate(correlations):
        for u in c.uses:
            blocks[u.step // BLOCK][0].append((u.step, var, u.place, u.name, u.encoding, u.recorded, u.span,
                                               u.json_path))
        rows = [(s.step, var, s.kind, s.key, s.prefix, s.suffix) for s in c.sources]
        for row in rows:
            blocks[row[0] // BLOCK][1].append(row)
        by_var.append(rows)
    body = bytearray()
    where: list[tuple[int, int]] = []
    for block in blocks:
        data = _ENCODER.encode(block)
        where.append((len(body), len(data)))
        body += data
    data = _ENCODER.encode(by_var)
    sources = (len(body), len(data))
    body += data
    header = _ENCODER.encode(_Header(steps, BLOCK, [c.value for c in correlations], where, sources,
                                     hashlib.sha256(body).hexdigest()))
    return len(header).to_bytes(8, "little") + header + bytes(body)


class Indexed:
    """A cache entry's correlations, a block at a time (``open``); variables numbered from 0."""

    __slots__ = ("path", "values", "_file", "_base", "_header", "_sources", "_last")

    def __init__(self, path: Path, file: io.FileIO, base: int, header: _Header) -> None:
        self.path = path
        self.values = tuple(header.values)
        self._file = file  # (held open: the entry may be replaced meanwhile, the blocks read stay these)
        self._base = base
        self._header = header
        self._sources: list[list[_SourceRow]] | None = None
        self._last: tuple[int, Run] | None = None

    @classmethod
    def open(cls, path: Path, steps: int) -> Indexed | None:
        """The entry at ``path`` for a session of ``steps`` requests, or None when it is missing, damaged
        or of another session (a miss: the caller works it out again)."""
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115  # (held by the index, closed with it)
        except OSError as e:
            if not isinstance(e, FileNotFoundError):
                logger.debug(f"{path}: not used ({e})")
            return None
        try:
            size = int.from_bytes(os.pread(file.fileno(), 8, 0), "little")
            header = _HEADER.decode(os.pread(file.fileno(), size, 8))
            file.seek(8 + size)
            intact = hashlib.file_digest(file, "sha256").hexdigest() == header.digest
            blocks = (steps + header.block - 1) // header.block if header.block > 0 else -1
            if not intact or header.steps != steps or len(header.blocks) != blocks:
                raise ValueError("damaged, or of another session")
        except (OSError, ValueError, msgspec.MsgspecError) as e:
            file.close()
            logger.debug(f"{path}: not used ({e})")
            return None
        return cls(path, file, 8 + size, header)

    def __len__(self) -> int:
        return len(self.values)

    def _read(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, self._base + offset)

    def _block(self, number: int) -> Run:
        last = self._last
        if last is not None and last[0] == number:
            return last[1]
        use_rows, source_rows = _BLOCK.decode(self._read(*self._header.blocks[number]))
        values = self.values
        uses: dict[int, list[tuple[int, Use, str]]] = {}
        for step, var, place, name, encoding, recorded, span, json_path in use_rows:
            uses.setdefault(step, []).append((var, Use(step, place, name, encoding, recorded, span, json_path),
                                              values[var]))
        sources: dict[int, list[tuple[int, Source]]] = {}
        for step, var, kind, key, prefix, suffix in source_rows:
            sources.setdefault(step, []).append((var, Source(step, kind, key, prefix, suffix)))
        self._last = (number, (uses, sources))
        return uses, sources

    def at(self, start: int, stop: int) -> Run:
        block = self._header.block
        first, last = start // block, (stop - 1) // block
        if first == last:
            uses, sources = self._block(first)
            if start == first * block and stop >= min((first + 1) * block, self._header.steps):
                return uses, sources
            return ({s: u for s, u in uses.items() if start <= s < stop},
                    {s: f for s, f in sources.items() if start <= s < stop})
        found: tuple[dict[int, list[tuple[int, Use, str]]], dict[int, list[tuple[int, Source]]]] = ({}, {})
        for number in range(first, last + 1):
            uses, sources = self._block(number)
            found[0].update((s, u) for s, u in uses.items() if start <= s < stop)
            found[1].update((s, f) for s, f in sources.items() if start <= s < stop)
        return found

    def variable(self, var: int) -> Correlation:
        if self._sources is None:
            self._sources = _SOURCES.decode(self._read(*self._header.sources))
        return Correlation(self.values[var], [Source(s, kind, key, prefix, suffix)
                                              for s, _, kind, key, prefix, suffix in self._sources[var]])
