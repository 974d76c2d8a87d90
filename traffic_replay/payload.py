"""Everything a replay needs besides the code, as one message: the master's payload.

A replay reads its inputs once, where it starts (``replay run``, or a master run with
``locust -f``): the recordings, the rules file, the ``--data`` rows, the secrets supplied
as ``REPLAY_SECRET_*`` and the settings themselves. They travel as one compact JSON
document, zlib-compressed, with the SHA-256 of the compressed bytes beside it, to every
process that runs users: to each worker over Locust's own messages, and to a local run's
own process the same way, so that one process, ``--processes`` and real workers share one
loading path. A worker checks the digest before it opens the payload, and builds its
settings from the master's, keeping only its per-machine ones (``settings.PER_MACHINE``).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from pydantic import TypeAdapter

from traffic_replay.correlation import Rule, load_rules
from traffic_replay.correlation.secrets import describe_missing, missing_secrets, needed_secrets
from traffic_replay.errors import ConfigError, PayloadError, SessionFileError, report_skipped
from traffic_replay.format import Session, decode_sessions, read_recordings
from traffic_replay.naming import StatsNamer
from traffic_replay.recorded import recorded_endpoints
from traffic_replay.settings import Settings
from traffic_replay.thresholds import unknown_selectors
from traffic_replay.userdata import columns_by_recorded, load_rows

PAYLOAD_VERSION = 1
SECRET_PREFIX = "REPLAY_SECRET_"

_RULES = TypeAdapter(list[Rule])


class _Version(msgspec.Struct):
    version: int


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    """The payload's JSON, as it is written."""

    version: int
    settings: dict[str, Any]
    sessions: list[Session]
    rules: list[dict[str, Any]]
    rows: list[dict[str, str]]
    secrets: dict[str, str]
    skipped: list[tuple[str, str]]


class _Received(msgspec.Struct, forbid_unknown_fields=True):
    """The payload's JSON as it is read: each session kept as its bytes, then decoded (and validated)
    by the session format one at a time (``decode_sessions``)."""

    version: int
    settings: dict[str, Any]
    sessions: list[msgspec.Raw]
    rules: list[dict[str, Any]]
    rows: list[dict[str, str]]
    secrets: dict[str, str]
    skipped: list[tuple[str, str]] = []


@dataclass(frozen=True, slots=True)
class Workload:
    """A replay's inputs, decoded: what the processes that run users prepare their sessions from."""

    settings: Settings
    sessions: list[Session]
    rules: list[Rule] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    """``--data`` rows; each virtual user of the whole run takes its own (by its slot)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """``REPLAY_SECRET_*`` variables as the master had them."""
    skipped: list[SessionFileError] = field(default_factory=list)
    """The bad session files the master left out (``--skip-bad``), for its summary: the sessions above are the
    only ones a worker ever sees, so whatever a worker's own settings say, the master chose what runs."""


@dataclass(frozen=True, slots=True)
class Payload:
    """A workload as it travels: compressed JSON and the SHA-256 (hex) of those bytes."""

    blob: bytes
    digest: str

    @classmethod
    def of(cls, workload: Workload) -> Payload:
        document = _Document(
            version=PAYLOAD_VERSION,
            settings=orjson.loads(workload.settings.serialised()),
            sessions=workload.sessions,
            rules=_RULES.dump_python(workload.rules, mode="json", by_alias=True, exclude_none=True),
            rows=workload.rows,
            secrets=workload.secrets,
            skipped=[(str(e.path), e.detail) for e in workload.skipped],
        )
        # Level 1: a recording repeats itself so much that it still shrinks ~25x, three times faster than 6.
        blob = zlib.compress(msgspec.json.encode(document), 1)
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
        """The workload, once its bytes are checked against the digest; ``local`` keeps its per-machine settings."""
        actual = hashlib.sha256(self.blob).hexdigest()
        if actual != self.digest:
            raise PayloadError(f"the master's payload is damaged: digest {actual[:12]}, expected {self.digest[:12]}")
        try:
            raw = zlib.decompress(self.blob)
            version = msgspec.json.decode(raw, type=_Version).version
            if version != PAYLOAD_VERSION:
                raise PayloadError(f"the master's payload is version {version}; this worker reads "
                                   f"{PAYLOAD_VERSION}: run the same traffic-replay on both")
            document = msgspec.json.decode(raw, type=_Received)
            return Workload(
                settings=Settings.from_serialised(orjson.dumps(document.settings), local),
                sessions=decode_sessions(document.sessions),
                rules=_RULES.validate_python(document.rules),
                rows=document.rows,
                secrets=document.secrets,
                skipped=[SessionFileError(path, detail) for path, detail in document.skipped],
            )
        except (zlib.error, msgspec.MsgspecError, ValueError) as e:  # (pydantic's ValidationError is one)
            raise PayloadError(f"the master's payload cannot be read: {e}") from e


def read_workload(settings: Settings, environ: Mapping[str, str] = os.environ) -> Workload:
    """Read every input of a replay, once; a bad one is a ``ReplayError`` naming its file.

    A secret the recordings send and nobody supplied is one too: better refused here, before
    anything is sent, than each session's first request failing for the whole run.
    """
    recordings = read_recordings(settings.recordings, settings.skip_bad)
    report_skipped(recordings.skipped)  # here, where they are read: once, whichever process reads them
    sessions = recordings.sessions
    rules = load_rules(settings.rules) if settings.rules is not None else []
    if settings.data_map and settings.data is None:
        raise ConfigError("--data-map needs --data FILE.csv")
    rows = load_rows(settings.data, {c.column for c in settings.data_map}) if settings.data is not None else []
    secrets = {name: value for name, value in environ.items() if name.startswith(SECRET_PREFIX)}
    needed = needed_secrets(sessions, settings.correlate, rules, columns_by_recorded(settings.data_map))
    if missing := missing_secrets(needed, secrets):
        raise ConfigError(describe_missing(missing))
    if any(t.selector is not None for t in settings.fail_on):
        endpoints = recorded_endpoints(sessions, StatsNamer(settings.names, settings.name_pattern))
        if problems := unknown_selectors(settings.fail_on, endpoints, {s.name for s in sessions}):
            raise ConfigError(problems[0])
    return Workload(settings, sessions, rules, rows, secrets, recordings.skipped)


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
