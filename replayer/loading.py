"""From a workload to the prepared sessions that a process's users replay.

Preparing a session (detecting its correlations, compiling its steps) costs a few hundred
microseconds per request: a minute or more for a million. A process that prepared every
session before its first request would keep the run waiting that long, so a large
recording is prepared as it is used: each session the first time a user takes it, and the
rest in the background whenever the event loop has nothing else to do (``gevent.idle``).
A session big enough to hold the loop for long (``EAGER_FROM_REQUESTS``) is analysed before
the run starts instead, as is everything in a recording small enough to be ready at once;
its steps are built a run at a time (``replayer.steps.Steps``), the first before the run,
the rest as its users reach them or in the background, so that a session of a million
requests starts as soon as its analysis is done.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import overload

import gevent
from gevent.event import Event

from replayer.prepared import PreparedSession, prepare_session
from replayer.runlog import RunLog
from traffic_replay.correlation import Correlation, forget_recording
from traffic_replay.correlation.bystep import ByStep
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.errors import ConfigError
from traffic_replay.format import Session, uncollected
from traffic_replay.hosts import HostMap
from traffic_replay.naming import StatsNamer
from traffic_replay.packing import Packed, Unpacker
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings
from traffic_replay.userdata import columns_by_recorded

logger = logging.getLogger(__name__)

PREPARED_LOG = "prepared all"
"""How the log says that the background preparation is done (``benchmarks/scale.py`` waits for it)."""

EAGER_UP_TO_REQUESTS = 20_000
"""A recording of at most this many requests is prepared whole before the run: a few seconds."""
EAGER_FROM_REQUESTS = 1_000
"""A session of this many requests or more is prepared before the run: done later, it would hold
every user of the process still (a tenth of a second or more) in the middle of the run."""


class PreparedSessions(Sequence[PreparedSession]):
    """The sessions a process replays, in order, each prepared (and decoded) the first time it is taken.

    Until then a session is its packed form (``traffic_replay.packing``): its head, which says
    all that the users need before (its weight, its start), and its compressed JSON.
    """

    __slots__ = ("_recorded", "_prepared", "_prepare", "starts", "cum_weights")

    def __init__(self, sessions: list[Packed], prepare: Callable[[Packed], PreparedSession]) -> None:
        recorded = [s for s in sessions if s.requests]
        self.starts = tuple(s.start for s in recorded)
        """Each session's start after the first began, known before any is prepared (the timeline's schedule)."""
        self.cum_weights = tuple(accumulate(s.weight for s in recorded))
        self._recorded: list[Packed | None] = list(recorded)  # None once prepared: the recording is let go
        self._prepared: list[PreparedSession | None] = [None] * len(recorded)
        self._prepare = prepare

    def __len__(self) -> int:
        return len(self._prepared)

    @overload
    def __getitem__(self, index: int) -> PreparedSession: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[PreparedSession]: ...
    def __getitem__(self, index: int | slice) -> PreparedSession | Sequence[PreparedSession]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        prepared = self._prepared[index]
        if prepared is None:
            prepared = self._prepare_at(index)
        return prepared

    def __iter__(self) -> Iterator[PreparedSession]:
        return (self[i] for i in range(len(self)))

    @property
    def pending(self) -> int:
        """How many sessions are not prepared yet."""
        return sum(1 for p in self._prepared if p is None)

    def _prepare_at(self, index: int) -> PreparedSession:
        # No yield in here: two greenlets never prepare the same session.
        recorded = self._recorded[index]
        assert recorded is not None
        with uncollected(freeze=False):
            prepared = self._prepare(recorded)
        prepared.start = self.starts[index]
        self._prepared[index], self._recorded[index] = prepared, None
        return prepared

    def prepare_now(self, big_from: int = 0, between: Callable[[], object] = lambda: None,
                    whole: bool = True) -> None:
        """Prepare every session of at least ``big_from`` requests (all of them by default), calling
        ``between`` after each: a worker yields there, so that its heartbeats go on. Not ``whole``:
        each with only its first run of steps (``replayer.steps.Steps``), ``prepare_rest`` the rest."""
        for i, recorded in enumerate(self._recorded):
            if recorded is not None and recorded.requests >= big_from:
                self._prepare_at(i)
                between()
                if whole:
                    self._build(self._prepared[i], between)
        if not self.pending:
            forget_recording()

    def prepare_rest(self, between: Callable[[], object]) -> None:
        """Prepare what no user has taken yet and build every step not built yet, calling ``between``
        before each session and each run of steps (a greenlet's yield)."""
        started = time.perf_counter()
        for i in range(len(self)):
            between()
            if self._prepared[i] is None:
                self._prepare_at(i)
        forget_recording()
        for prepared in self._prepared:
            self._build(prepared, between)
        # What was prepared lives as long as the process: out of the collector's walks, as what
        # was loaded before the run is (``replayer.user._settle``).
        gc.freeze()
        logger.info(f"{PREPARED_LOG} {len(self):,} sessions, "
                    f"{time.perf_counter() - started:.1f} s after the first user could start")

    @staticmethod
    def _build(prepared: PreparedSession | None, between: Callable[[], object]) -> None:
        assert prepared is not None
        steps = prepared.steps
        while not steps.complete:
            with uncollected(freeze=False):
                steps.build_next()  # (no yield in here either: a user may be building the same steps)
            between()


class Replay:
    """What one process replays, filled once its payload arrives (``ready``); empty until then."""

    __slots__ = ("settings", "sessions", "cum_weights", "starts", "rows", "log", "ready")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: Sequence[PreparedSession] = ()
        self.cum_weights: tuple[float, ...] = ()
        self.starts: tuple[float, ...] = ()
        """Each session's recorded start after the first began (the timeline model's schedule)."""
        self.rows: tuple[dict[str, str], ...] = ()
        """``--data`` rows; a user takes the one of its slot (round robin)."""
        self.log = RunLog()
        self.ready = Event()

    def load(self, workload: Workload, host: str | None = None) -> None:
        """Take the workload's sessions (with its settings, which replace this process's) and say ready."""
        sessions = prepared_sessions(workload, host)
        if sum(s.requests for s in workload.sessions) <= EAGER_UP_TO_REQUESTS:
            sessions.prepare_now(between=gevent.idle)
        else:
            sessions.prepare_now(EAGER_FROM_REQUESTS, between=gevent.idle, whole=False)
            gevent.spawn(sessions.prepare_rest, gevent.idle)
        self.sessions, self.cum_weights, self.starts = sessions, sessions.cum_weights, sessions.starts
        self.settings = workload.settings
        self.rows = tuple(workload.rows)
        self.ready.set()

    def describe(self) -> str:
        settings = self.settings
        model = (f"open model, {settings.session_rate:g} sessions/s in all ({settings.arrivals})"
                 if settings.session_rate else "timeline" if settings.timeline else "closed model")
        return (f"replaying {len(self.sessions)} sessions from {settings.recordings}/ at speed {settings.speed:g},"
                f" {model}, correlation {'on' if settings.correlate else 'off'}")


def prepared_sessions(workload: Workload, host: str | None = None) -> PreparedSessions:
    """The workload's sessions, each compiled for the hot loop when first taken."""
    settings = workload.settings
    target = host or settings.host
    if not target:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    hosts = HostMap(target.rstrip("/"), workload.primary, settings.map_host)
    namer = StatsNamer(settings.names, settings.name_pattern)
    data_map = columns_by_recorded(settings.data_map)
    # Not the workload itself: it holds every recorded session, which must go once prepared.
    speed, correlate, rules, secrets = settings.speed, settings.correlate, workload.rules, workload.secrets
    unpack = Unpacker()  # one for the process's sessions: what repeats across them is held once
    cache = AnalysisCache.of(settings) if correlate else AnalysisCache(None)

    def prepare(packed: Packed) -> PreparedSession:
        detected: list[Correlation] | ByStep | None
        session, detected = _piecewise(packed) if not rules and not data_map else (None, None)
        if session is None:
            session = unpack(packed)
            detected = cache.analyse(session, packed.digest).correlations if cache.directory is not None else None
        return prepare_session(session, speed, hosts, correlate, rules, data_map, environ=secrets, namer=namer,
                               detected=detected)

    def _piecewise(packed: Packed) -> tuple[Session | None, ByStep | None]:
        # Decoded as its steps are built, when nothing needs it whole first: detection (unless it is
        # remembered), rules, data columns (``traffic_replay.piecewise``); its correlations read a
        # block of steps at a time too (``correlation.bystep``).
        if not packed.marks:
            return None, None
        by_step = cache.by_step(packed.digest, packed.requests) if correlate else None
        if correlate and by_step is None:
            return None, None
        return unpack.piecewise(packed), by_step
    return PreparedSessions(workload.sessions, prepare)


def prepare_workload(workload: Workload, host: str | None = None) -> tuple[PreparedSession, ...]:
    """Every session of the workload, prepared now (a dry run shows them all)."""
    sessions = prepared_sessions(workload, host)
    sessions.prepare_now()
    return tuple(sessions)
