"""From settings to prepared sessions: recordings, rules and host map, loaded once."""

from __future__ import annotations

from typing import NamedTuple

from replayer.prepared import PreparedSession, prepare
from traffic_replay.errors import ConfigError
from traffic_replay.format import load_recordings
from traffic_replay.hosts import HostMap, primary_host
from traffic_replay.naming import StatsNamer
from traffic_replay.rules import load_rules
from traffic_replay.settings import Settings
from traffic_replay.userdata import columns_by_recorded, load_rows


class Replay(NamedTuple):
    sessions: tuple[PreparedSession, ...]
    cum_weights: tuple[float, ...]
    rows: tuple[dict[str, str], ...]  # --data rows, one per virtual user (round robin)


def load_prepared(settings: Settings, host: str | None) -> Replay:
    target = host or settings.host
    if not target:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    sessions = load_recordings(settings.recordings)
    rules = load_rules(settings.rules) if settings.rules is not None else []
    hosts = HostMap(target.rstrip("/"), primary_host(sessions), settings.map_host)
    data_map = columns_by_recorded(settings.data_map)
    if data_map and settings.data is None:
        raise ConfigError("--data-map needs --data FILE.csv")
    rows = load_rows(settings.data, set(data_map.values())) if settings.data is not None else []
    namer = StatsNamer(settings.names, settings.name_pattern)
    prepared, cum_weights = prepare(sessions, settings.speed, hosts, settings.correlate, rules, data_map, namer=namer)
    return Replay(prepared, cum_weights, tuple(rows))
