"""One watchdog per process for the whole-request deadline (``--timeout``).

A ``gevent.Timeout`` per request (a libev timer armed and disarmed, an object made and
closed) costs ~1.4 µs, about 2 % of what a request costs the replay: more than the margin
by which the replay should beat a hand-written locustfile. A request instead notes when it
is due and in which greenlet; one greenlet looks, a few times per timeout, for a request
past its due time and raises its timeout in it, as the timer would have. A request's cost
is then two dictionary operations, and a deadline is kept to within a tenth of the timeout
(at most ``MAX_PERIOD_S``), which is all a timeout of seconds asks.

The raise goes through the hub's callbacks, as gevent's own timers do: a greenlet can only
be thrown into from the hub. Between the watchdog's look and the callback the request may
have ended; the callback therefore raises only if the very same request is still in flight
(single-threaded: nothing runs between its check and the raise).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent import Timeout
from greenlet import getcurrent

MAX_PERIOD_S = 0.25
"""The watchdog looks at least this often, however long the timeout."""


class Deadlines:
    """The requests in flight in this process, by greenlet: (due on ``perf_counter``, the timeout to raise)."""

    __slots__ = ("_inflight", "_period", "_watchdog")

    def __init__(self) -> None:
        self._inflight: dict[Any, tuple[float, Timeout]] = {}
        self._period = MAX_PERIOD_S
        self._watchdog: gevent.Greenlet | None = None

    def start(self, seconds: float, timeout: Timeout) -> tuple[Any, tuple[float, Timeout]]:
        """The current greenlet's request is due in ``seconds``: ``timeout`` is raised in it then. What to
        pass to ``end``."""
        if seconds / 10 < self._period:
            self._period = seconds / 10
        if self._watchdog is None:
            self._watchdog = gevent.spawn(self._watch)
        me = getcurrent()
        entry = (time.perf_counter() + seconds, timeout)
        self._inflight[me] = entry
        return me, entry

    def end(self, started: tuple[Any, tuple[float, Timeout]]) -> None:
        me, entry = started
        if self._inflight.get(me) is entry:
            del self._inflight[me]

    def _watch(self) -> None:
        loop = gevent.get_hub().loop
        while True:
            gevent.sleep(self._period)
            now = time.perf_counter()
            for glet, entry in list(self._inflight.items()):
                if entry[0] <= now:
                    loop.run_callback(self._expire, glet, entry)

    def _expire(self, glet: Any, entry: tuple[float, Timeout]) -> None:
        if self._inflight.get(glet) is entry:
            del self._inflight[glet]
            glet.throw(entry[1])


deadlines = Deadlines()
"""This process's watchdog (a process runs one gevent hub)."""
