"""What reading one session file finds for a replay, worked out once and remembered by the file's content.

Before its first request a replay needs of each session file its head and a few facts about
all of it: the hosts it sends to, the secrets it sends, its endpoints and recorded
durations (named as the replay names them), what the preflight check may probe. Working
them out means decoding and checking every request (~1.2 s per 100,000), so with the cache
on (``--cache``) a ``Reading`` is kept in the cache directory (``traffic_replay.cachedir``)
under the digest of the file's bytes, the fingerprint of the code that read it and what
it was asked (the stats naming): a file with a remembered reading is not decoded at all
where the recording is read, because the same bytes were checked by the same code before.
With a rules file or ``--data-map`` the secrets depend on those too, and nothing is
remembered.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import msgspec

import traffic_replay
from traffic_replay.cachedir import CacheDir, source_fingerprint
from traffic_replay.correlation import Rule, Use
from traffic_replay.correlation.secrets import Secret, needed_secrets
from traffic_replay.format import Session, checked_session, file_digest, read_session_bytes
from traffic_replay.hosts import host_key
from traffic_replay.naming import StatsNamer
from traffic_replay.recorded import Durations, add_durations, recorded_endpoints
from traffic_replay.redacted import secret_env_name
from traffic_replay.sharing import Shared

__all__ = ["Look", "Reading", "keep", "read_file"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Look:
    """What to work out of each session as it is read, besides its head (the settings' part of it)."""

    correlate: bool = True
    rules: Sequence[Rule] = ()
    data_map: dict[str, str] = field(default_factory=dict)
    """Recorded value -> ``--data`` column: a secret a column supplies is no missing one."""
    namer: StatsNamer | None = None
    """Set when a threshold names an endpoint: the recording's endpoints, named as the replay names them."""
    probe: Callable[[Session], tuple[frozenset[str], frozenset[str]]] | None = None
    """Set for a preflight check (``checks.probe_hosts``): which sessions it may find a probe in."""
    timed: StatsNamer | None = None
    """Set to collect each endpoint's recorded durations (the summary's recorded latency), named so."""
    cache: Path | None = None
    """The cache directory, where what is read is remembered (None: worked out from every file)."""

    def _key(self) -> str | None:
        """What the entry's facts depend on besides the file, or None when they cannot be remembered."""
        if self.rules or self.data_map or self.cache is None:
            return None
        named = self.named
        keys = (named.key if named is not None else "", self.timed.key if self.timed is not None else "")
        return hashlib.sha256("\0\0".join(keys).encode()).hexdigest()[:12]

    @property
    def named(self) -> StatsNamer | None:
        """How the endpoints are named: as a threshold names them, else as the recorded latency is."""
        return self.namer if self.namer is not None else self.timed


class Reading(msgspec.Struct, array_like=True, gc=False):
    """What one session file says for a replay: its head, and the facts ``Look`` asks for."""

    id: str
    name: str
    weight: float
    started_at: datetime
    requests: int
    hosts: list[tuple[str, int]]
    """Requests per ``host:port``, in the order they are first sent to (which breaks a tie)."""
    secrets: list[tuple[str, list[Use]]]
    """``needed_secrets``: each placeholder and where it is sent."""
    endpoints: list[tuple[str, str]] | None = None
    durations: list[tuple[str, str, list[float]]] | None = None
    probe: tuple[list[str], list[str]] | None = None

    def answers(self, look: Look) -> bool:
        """Does it hold all that ``look`` asks for?"""
        return ((look.namer is None or self.endpoints is not None)
                and (look.timed is None or self.durations is not None)
                and (look.probe is None or self.probe is not None))

    def needed(self) -> list[Secret]:
        return [Secret(p, secret_env_name(p), self.name, tuple(uses)) for p, uses in self.secrets]

    def add_durations(self, into: Durations) -> None:
        for method, name, values in self.durations or ():
            into.setdefault((method, name), []).extend(values)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Reading)


@cache
def fingerprint() -> str:
    """The version of what reads a file: every source file of the shared core (its checks, names, secrets)."""
    return source_fingerprint(sorted(Path(traffic_replay.__file__).parent.rglob("*.py")))


def read_file(path: Path, look: Look, shared: Shared) -> tuple[Reading, bytes, str]:
    """The file's ``Reading`` (remembered, or worked out of the checked session), its bytes and their digest;
    ``SessionFileError`` naming the field at fault, as ``format.read_session``."""
    raw = read_session_bytes(path)
    digest = file_digest(raw)
    store = CacheDir(look.cache)
    entry = _entry(store, digest, look)
    if (data := store.get(entry)) is not None:
        try:
            found = _DECODER.decode(data)
        except (msgspec.MsgspecError, ValueError) as e:
            logger.debug(f"{entry}: not used ({e})")
        else:
            if found.answers(look):
                return found, raw, digest
    found = reading(checked_session(path, raw, shared), look)
    store.put(entry, _ENCODER.encode(found))
    return found, raw, digest


def keep(session: Session, digest: str, look: Look, secrets: Sequence[Secret]) -> None:
    """Remember what ``look`` asks of a checked session whose file has this digest and whose secrets are
    worked out already (``replay inspect`` has them from its analysis): a replay that looks alike then
    decodes nothing of the file. An entry already there is kept as it is."""
    store = CacheDir(look.cache)
    entry = _entry(store, digest, look)
    if entry is not None and not entry.exists():
        store.put(entry, _ENCODER.encode(reading(session, look, secrets)))


def _entry(store: CacheDir, digest: str, look: Look) -> Path | None:
    key = look._key()
    return store.entry("read", fingerprint(), f"{digest}-{key}.msgpack") if key is not None else None


def reading(session: Session, look: Look, secrets: Sequence[Secret] | None = None) -> Reading:
    """What ``look`` asks of a checked session (``secrets``: its ``needed_secrets``, when they are known)."""
    hosts = Counter(host_key(r) for r in session.requests)
    if secrets is None:
        secrets = needed_secrets([session], look.correlate, look.rules, look.data_map)
    endpoints = durations = probe = None
    if (named := look.named) is not None:
        endpoints = sorted(recorded_endpoints([session], named))
    if look.timed is not None:
        durations = [(method, name, values)
                     for (method, name), values in add_durations([session], look.timed, {}).items()]
    if look.probe is not None:
        gets, maybe = look.probe(session)
        probe = (sorted(gets), sorted(maybe))
    return Reading(session.id, session.name, session.weight, session.started_at, len(session.requests),
                   list(hosts.items()), [(s.placeholder, list(s.uses)) for s in secrets], endpoints, durations, probe)
