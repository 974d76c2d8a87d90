"""From a workload to the prepared sessions that a process's users replay."""

from __future__ import annotations

from gevent.event import Event

from replayer.divergence import RunLog
from replayer.prepared import PreparedSession, prepare
from traffic_replay.errors import ConfigError
from traffic_replay.hosts import HostMap, primary_host
from traffic_replay.naming import StatsNamer
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings
from traffic_replay.userdata import columns_by_recorded


class Replay:
    """What one process replays, filled once its payload arrives (``ready``); empty until then."""

    __slots__ = ("settings", "sessions", "cum_weights", "rows", "log", "ready")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: tuple[PreparedSession, ...] = ()
        self.cum_weights: tuple[float, ...] = ()
        self.rows: tuple[dict[str, str], ...] = ()
        """``--data`` rows; a user takes the one of its slot (round robin)."""
        self.log = RunLog()
        self.ready = Event()

    def load(self, workload: Workload, host: str | None = None) -> None:
        """Prepare the workload's sessions (with its settings, which replace this process's) and say ready."""
        self.sessions, self.cum_weights = prepare_workload(workload, host)
        self.settings = workload.settings
        self.rows = tuple(workload.rows)
        self.ready.set()

    def describe(self) -> str:
        settings = self.settings
        model = (f"open model, {settings.session_rate:g} sessions/s in all ({settings.arrivals})"
                 if settings.session_rate else "timeline" if settings.timeline else "closed model")
        return (f"replaying {len(self.sessions)} sessions from {settings.recordings}/ at speed {settings.speed:g},"
                f" {model}, correlation {'on' if settings.correlate else 'off'}")


def prepare_workload(workload: Workload, host: str | None = None,
                     ) -> tuple[tuple[PreparedSession, ...], tuple[float, ...]]:
    """The sessions compiled for the hot loop, with their cumulative weights."""
    settings = workload.settings
    target = host or settings.host
    if not target:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    hosts = HostMap(target.rstrip("/"), primary_host(workload.sessions), settings.map_host)
    return prepare(workload.sessions, settings.speed, hosts, settings.correlate, workload.rules,
                   columns_by_recorded(settings.data_map), environ=workload.secrets,
                   namer=StatsNamer(settings.names, settings.name_pattern))
