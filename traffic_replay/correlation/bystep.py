"""A session's correlations by step: what building a run of steps needs, and no more.

The replay builds a session's steps a run at a time (``replayer.steps``); each run needs the
uses and the sources of its own steps, and each variable's value from the start. ``InMemory``
indexes a list of correlations once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from traffic_replay.correlation.model import Correlation, Source, Use

__all__ = ["ByStep", "InMemory", "Joined", "Run", "Variables"]

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
