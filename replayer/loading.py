"""From settings to prepared sessions: recordings, rules and host map, loaded once."""

from __future__ import annotations

from replayer.prepared import PreparedSession, prepare
from traffic_replay.errors import ConfigError
from traffic_replay.format import load_recordings
from traffic_replay.hosts import HostMap, parse_host_maps, primary_host
from traffic_replay.rules import load_rules
from traffic_replay.settings import Settings


def load_prepared(settings: Settings, host: str | None) -> tuple[tuple[PreparedSession, ...], tuple[float, ...]]:
    target = host or settings.host
    if not target:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    sessions = load_recordings(settings.recordings)
    rules = load_rules(settings.rules) if settings.rules is not None else []
    hosts = HostMap(target.rstrip("/"), primary_host(sessions), parse_host_maps(settings.map_host))
    return prepare(sessions, settings.speed, hosts, settings.correlate, rules)
