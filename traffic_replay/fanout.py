"""Work on many sessions spread over the machine's cores: sessions are independent of each other.

Used where a command does one pure computation per session (``replay inspect``: read a
session file, detect, describe) and nothing else runs: the children are forked, so they
start with what the parent holds (sessions already loaded stay shared, copy-on-write; or
only the files' names, which each child reads for itself) and only the results travel
back, pickled. Never in the replay process: Locust's gevent hub does not survive a fork.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["FORK_FROM", "cores", "map_spread"]

T = TypeVar("T")
S = TypeVar("S")

FORK_FROM = 20_000
"""Requests in all below which one process does it: forking and pickling cost more than they save."""

_work: tuple[Callable[[Any], object], Sequence[Any]] | None = None


def _one(index: int) -> object:
    assert _work is not None
    function, items = _work
    return function(items[index])


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def map_spread(function: Callable[[S], T], items: Sequence[S], requests: Sequence[int]) -> list[T]:
    """``[function(i) for i in items]``, in that order, over the cores when there is enough to share;
    ``requests``: about how many requests each item is (what decides whether forking is worth it).

    ``function`` must be a module-level function (or a ``functools.partial`` of one) whose
    result pickles; an exception it raises is raised here as it would be in one process.
    """
    processes = min(cores(), len(items))
    if processes < 2 or sum(requests) < FORK_FROM:
        return [function(i) for i in items]
    global _work
    _work = (function, items)
    try:
        # Small chunks in order: sessions differ in length, and one long one must not hold up a chunk.
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            done: list[T] = pool.map(_one, range(len(items)),  # type: ignore[arg-type]
                                     chunksize=max(1, len(items) // (processes * 16)))
            return done
    finally:
        _work = None
