"""Everything a replay needs besides the code, as one message: the master's payload.

A replay reads its inputs once, where it starts (``replay run``, or a master run with
``locust -f``): the recordings, the rules file, the ``--data`` rows, the secrets supplied
as ``REPLAY_SECRET_*`` and the settings themselves. They travel as one msgpack document,
with the SHA-256 of its bytes beside it, to every process that runs users: to each worker
over Locust's own messages (msgpack too), and to a local run's own process the same way,
so that one process, ``--processes`` and real workers share one loading path. The sessions
in it are packed (``traffic_replay.packing``): each session file's JSON compressed on its
own, with its head beside it, so that a process decodes a session only when it prepares
it. A worker checks the digest before it opens the payload, and builds its settings from
the master's, keeping only its per-machine ones (``settings.PER_MACHINE``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from pydantic import TypeAdapter

from traffic_replay.correlation import Rule, load_rules
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.correlation.secrets import describe_missing, missing_secrets
from traffic_replay.errors import ConfigError, PayloadError, ReplayError, SessionFileError, report_skipped
from traffic_replay.format import Session
from traffic_replay.hosts import primary_host
from traffic_replay.naming import StatsNamer
from traffic_replay.packing import Look, Packed, Probing, Recorded, pack, read_packed
from traffic_replay.recorded import RecordedLatency, latency, recorded_latency
from traffic_replay.settings import Settings
from traffic_replay.thresholds import unknown_selectors
from traffic_replay.userdata import columns_by_recorded, load_rows

PAYLOAD_VERSION = 4
SECRET_PREFIX = "REPLAY_SECRET_"

_RULES = TypeAdapter(list[Rule])


class _Version(msgspec.Struct):
    version: int


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    """The payload's document, as it is written and read."""

    version: int
    settings: dict[str, Any]
    sessions: list[Packed]
    primary: str | None
    rules: list[dict[str, Any]]
    rows: list[dict[str, str]]
    secrets: dict[str, str]
    skipped: list[tuple[str, str]]
    latency: list[tuple[str, str, int, float, float]]


@dataclass(frozen=True, slots=True)
class Workload:
    """A replay's inputs: what the processes that run users prepare their sessions from."""

    settings: Settings
    sessions: list[Packed]
    """Each session packed: decoded when it is prepared (``Unpacker``), its head known before."""
    primary: str | None
    """The recorded ``host:port`` most requests went to: what ``--host`` stands for."""
    rules: list[Rule] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    """``--data`` rows; each virtual user of the whole run takes its own (by its slot)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """``REPLAY_SECRET_*`` variables as the master had them."""
    skipped: list[SessionFileError] = field(default_factory=list)
    """The bad session files the master left out (``--skip-bad``), for its summary: the sessions above are the
    only ones a worker ever sees, so whatever a worker's own settings say, the master chose what runs."""
    probing: Probing | None = None
    """What the preflight check needs, where the recordings were read for one (``read_workload``); not carried."""
    latency: dict[tuple[str, str], RecordedLatency] = field(default_factory=dict)
    """The recording's latency per endpoint (``recorded.recorded_latency``), worked out as it was read: the end
    of a run puts it beside the replayed figures without decoding every session again."""

    @classmethod
    def of(cls, settings: Settings, sessions: Sequence[Session], rules: Sequence[Rule] = (),
           rows: Sequence[dict[str, str]] = (), secrets: Mapping[str, str] | None = None) -> Workload:
        """A workload of sessions made in code (what ``read_workload`` reads from files)."""
        return cls(settings, pack(sessions), primary_host(list(sessions)), list(rules), list(rows),
                   dict(secrets or {}), latency=recorded_latency(sessions, _namer(settings)))

    def recorded(self) -> Recorded:
        """The sessions decoded, each as it is taken and not kept (for what reads them all once)."""
        return Recorded(self.sessions)


@dataclass(frozen=True, slots=True)
class Payload:
    """A workload as it travels: its document's bytes and their SHA-256 (hex)."""

    blob: bytes
    digest: str

    @classmethod
    def of(cls, workload: Workload) -> Payload:
        document = _Document(
            version=PAYLOAD_VERSION,
            settings=orjson.loads(workload.settings.serialised()),
            sessions=workload.sessions,
            primary=workload.primary,
            rules=_RULES.dump_python(workload.rules, mode="json", by_alias=True, exclude_none=True),
            rows=workload.rows,
            secrets=workload.secrets,
            skipped=[(str(e.path), e.detail) for e in workload.skipped],
            latency=[(method, name, *figures) for (method, name), figures in workload.latency.items()],
        )
        # Not compressed again: the sessions, nearly all of it, are compressed each on its own.
        blob = msgspec.msgpack.encode(document)
        return cls(blob, hashlib.sha256(blob).hexdigest())

    def message(self) -> dict[str, Any]:
        """The data of the message that carries it (msgpack takes bytes as they are)."""
        return {"digest": self.digest, "blob": self.blob}

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Payload:
        try:
            return cls(bytes(data["blob"]), str(data["digest"]))
        except (KeyError, TypeError) as e:
            raise PayloadError(f"the master's payload has no {e}") from None

    def open(self, local: Settings | None = None) -> Workload:
        """The workload, once its bytes are checked against the digest; ``local`` keeps its per-machine settings.

        Its sessions stay packed, views of this payload's bytes: a session is decoded (and checked
        again) when it is prepared.
        """
        actual = hashlib.sha256(self.blob).hexdigest()
        if actual != self.digest:
            raise PayloadError(f"the master's payload is damaged: digest {actual[:12]}, expected {self.digest[:12]}")
        try:
            version = msgspec.msgpack.decode(self.blob, type=_Version).version
            if version != PAYLOAD_VERSION:
                raise PayloadError(f"the master's payload is version {version}; this worker reads "
                                   f"{PAYLOAD_VERSION}: run the same traffic-replay on both")
            document = msgspec.msgpack.decode(self.blob, type=_Document)
            return Workload(
                settings=Settings.from_serialised(orjson.dumps(document.settings), local),
                sessions=document.sessions,
                primary=document.primary,
                rules=_RULES.validate_python(document.rules),
                rows=document.rows,
                secrets=document.secrets,
                skipped=[SessionFileError(path, detail) for path, detail in document.skipped],
                latency={(method, name): RecordedLatency(requests, median, p95)
                         for method, name, requests, median, p95 in document.latency},
            )
        except (msgspec.MsgspecError, ValueError) as e:  # (pydantic's ValidationError is one)
            raise PayloadError(f"the master's payload cannot be read: {e}") from e


def read_workload(settings: Settings, environ: Mapping[str, str] = os.environ, fork: bool = False,
                  check: bool = False) -> Workload:
    """Read every input of a replay, once; a bad one is a ``ReplayError`` naming its file.

    A secret the recordings send and nobody supplied is one too: better refused here, before
    anything is sent, than each session's first request failing for the whole run. What needs
    every session (the secrets they send, the endpoints a threshold names, the primary host) is
    worked out as each file is read (``read_packed``; ``fork``: over two processes for a big
    recording, never from a process that runs gevent), and with ``check`` what the preflight check needs.
    """
    rules: list[Rule] = []
    unreadable: ReplayError | None = None
    try:
        rules = load_rules(settings.rules) if settings.rules is not None else []
    except ReplayError as e:  # said after what is wrong with the recordings, as it always was
        unreadable = e
    selectors = any(t.selector is not None for t in settings.fail_on)
    probe = None
    if check:
        from traffic_replay.checks import probe_hosts  # (httpx is only worth importing for the check)

        probe = probe_hosts
    namer = _namer(settings)
    look = Look(settings.correlate, rules, columns_by_recorded(settings.data_map), namer if selectors else None,
                probe, timed=namer, cache=AnalysisCache.of(settings, environ).directory)
    recordings = read_packed(settings.recordings, look, settings.skip_bad, fork)
    report_skipped(recordings.skipped)  # here, where they are read: once, whichever process reads them
    if unreadable is not None:
        raise unreadable
    if settings.data_map and settings.data is None:
        raise ConfigError("--data-map needs --data FILE.csv")
    rows = load_rows(settings.data, {c.column for c in settings.data_map}) if settings.data is not None else []
    secrets = {name: value for name, value in environ.items() if name.startswith(SECRET_PREFIX)}
    if missing := missing_secrets(recordings.secrets, secrets):
        raise ConfigError(describe_missing(missing))
    if selectors:
        names = {s.name for s in recordings.sessions}
        if problems := unknown_selectors(settings.fail_on, recordings.endpoints, names):
            raise ConfigError(problems[0])
    return Workload(settings, recordings.sessions, recordings.primary, rules, rows, secrets, recordings.skipped,
                    recordings.probing, latency(recordings.durations))


def _namer(settings: Settings) -> StatsNamer:
    """The stats names the replay gives its requests (``replayer.prepared`` names them with the same)."""
    return StatsNamer(settings.names, settings.name_pattern)


PAYLOAD_FD_ENV = "REPLAY_PAYLOAD_FD"
"""How ``replay run`` hands the payload it read to the Locust process it becomes: an inherited memfd."""


def hand_over(payload: Payload) -> dict[str, str]:
    """Put the payload in an anonymous in-memory file that survives ``exec``; the variables that name it."""
    fd = os.memfd_create("replay-payload", 0)  # no MFD_CLOEXEC: the exec'd process inherits it
    view = memoryview(payload.blob)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return {PAYLOAD_FD_ENV: str(fd)}


def take_over(environ: Mapping[str, str] = os.environ) -> Payload | None:
    """The payload ``replay run`` handed over, read once (and its file closed), or None under plain ``locust``."""
    fd = environ.get(PAYLOAD_FD_ENV)
    if not fd:
        return None
    try:
        with os.fdopen(int(fd), "rb") as fh:
            blob = fh.read()
    except (OSError, ValueError) as e:
        raise PayloadError(f"{PAYLOAD_FD_ENV}={fd}: cannot read the payload: {e}") from e
    return Payload(blob, hashlib.sha256(blob).hexdigest())
