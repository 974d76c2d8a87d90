"""Sessions compiled for the replay loop: everything per file is done once, here.

What a session needs before its first request (its correlations, the values its variables
start with, the secrets it needs) is worked out whole; its steps (``replayer.steps``) are
built a run at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from itertools import accumulate

from replayer.steps import StepBuilder, Steps
from traffic_replay.correlation import Correlation, Rule, apply_rules, detect, uses_in
from traffic_replay.correlation.bystep import ByStep, InMemory, Joined, Variables
from traffic_replay.correlation.secrets import session_secrets
from traffic_replay.format import Session
from traffic_replay.hosts import HostMap
from traffic_replay.naming import StatsNamer
from traffic_replay.piecewise import Requests
from traffic_replay.redacted import secret_env_name, secret_from_env


class PreparedSession:
    __slots__ = ("id", "name", "weight", "steps", "initial", "live", "variables", "data", "missing", "start")

    def __init__(self, id: str, name: str, weight: float, steps: Steps,
                 variables: Sequence[Correlation]) -> None:
        self.id = id
        self.name = name
        self.weight = weight
        self.steps = steps
        self.variables = variables
        # Each variable's value before any response: the recorded one (sent, and reported,
        # when no live value was found), or a secret supplied from the environment.
        self.initial: tuple[str, ...] = ()
        self.live: tuple[bool, ...] = ()
        self.data: tuple[tuple[int, str], ...] = ()  # (variable, CSV column) filled from each user's row
        self.missing: str | None = None  # why this session cannot be replayed at all
        self.start = 0.0  # seconds after the first recorded session began (timeline model)


def _seeded(session: Session, correlations: list[Correlation], data_map: dict[str, str],
            environ: Mapping[str, str]) -> tuple[list[Correlation], list[tuple[int, str]], dict[int, str], list[str]]:
    """Variables set before the session runs: data columns and redacted secrets."""
    variables = [c for c in correlations if c.value not in data_map]
    data: list[tuple[int, str]] = []
    for recorded, column in data_map.items():
        uses = [u for step, r in enumerate(session.requests) for u in uses_in(r, step, recorded)]
        if uses:
            data.append((len(variables), column))
            variables.append(Correlation(recorded, uses=uses, rule=f"data:{column}"))
    secret, secrets, missing = _secret_variables(session, correlations, data_map, environ, len(variables))
    return variables + secret, data, secrets, missing


def _secret_variables(session: Session, correlations: Sequence[Correlation], data_map: dict[str, str],
                      environ: Mapping[str, str], first: int) -> tuple[list[Correlation], dict[int, str], list[str]]:
    """The secrets' variables (numbered from ``first``), the values the environment gives them, the placeholders
    it lacks."""
    # The decision `read_workload` made before the run started (it refuses a missing secret);
    # here it picks each secret's value, and still guards a payload built without that check.
    requests = session.requests
    steps = requests.placeholder_steps() if isinstance(requests, Requests) else None
    variables: list[Correlation] = []
    secrets: dict[int, str] = {}
    missing: list[str] = []
    for secret in session_secrets(session, correlations, data_map, steps):
        value = secret_from_env(secret.placeholder, environ)
        if value is None:
            missing.append(secret.placeholder)
        else:
            secrets[first + len(variables)] = value
        variables.append(Correlation(secret.placeholder, uses=list(secret.uses), rule="secret"))
    return variables, secrets, missing


def prepare_session(session: Session, speed: float, hosts: HostMap | None = None, correlate: bool = True,
                    rules: list[Rule] | None = None, data_map: dict[str, str] | None = None,
                    environ: Mapping[str, str] = os.environ, namer: StatsNamer | None = None,
                    detected: list[Correlation] | ByStep | None = None) -> PreparedSession:
    """The session with its first run of steps built (``Steps``); ``detected``: its correlations
    when they are known already (``correlation.cache``), by step for a long one read a block at a time
    (then without rules or data columns)."""
    if not correlate:
        correlations: list[Correlation] = []
    elif detected is None or isinstance(detected, list):
        correlations = detect(session) if detected is None else detected
    elif rules or data_map:
        raise ValueError("correlations by step are for a session without rules or data columns")
    else:
        return _by_step(session, speed, hosts, environ, namer, detected)
    if correlate and rules:
        correlations = apply_rules(session, rules, correlations)
    correlations, data, secrets, missing = _seeded(session, correlations, data_map or {}, environ)
    variables = InMemory(correlations)
    # Where each value is sent is in the steps' patches (the builder holds the uses until the last
    # is built): what a report or a dry run names of a variable is its value, sources and rule.
    kept = tuple(variables.variable(var) for var in range(len(variables)))
    prepared = _prepared(session, speed, hosts, namer, variables, kept, secrets, missing)
    prepared.data = tuple(data)
    return prepared


def _by_step(session: Session, speed: float, hosts: HostMap | None, environ: Mapping[str, str],
             namer: StatsNamer | None, detected: ByStep) -> PreparedSession:
    # Only a placeholder that is a correlation's own value is filled live (no rules here to inject over one):
    # the few such correlations are all the secrets check needs of hundreds of thousands.
    placeholders = [Correlation(value) for value in detected.values if "redacted" in value]
    secret, secrets, missing = _secret_variables(session, placeholders, {}, environ, len(detected))
    variables = Joined(detected, InMemory(secret, first=len(detected))) if secret else detected
    return _prepared(session, speed, hosts, namer, variables, Variables(variables), secrets, missing)


def _prepared(session: Session, speed: float, hosts: HostMap | None, namer: StatsNamer | None, variables: ByStep,
              kept: Sequence[Correlation], secrets: dict[int, str], missing: list[str]) -> PreparedSession:
    builder = StepBuilder(session, speed, hosts, namer or StatsNamer(), variables)
    prepared = PreparedSession(session.id, session.name, session.weight, Steps(len(session.requests), builder), kept)
    prepared.initial = tuple(secrets.get(i, value) for i, value in enumerate(variables.values))
    prepared.live = tuple(i in secrets for i in range(len(variables)))
    if missing:
        names = ", ".join(f"{m} (set {secret_env_name(m)} or map a --data column to it)" for m in missing)
        prepared.missing = f"session {session.name!r} needs a secret nobody supplied: {names}"
    return prepared


def prepare(sessions: list[Session], speed: float, hosts: HostMap | None = None, correlate: bool = True,
            rules: list[Rule] | None = None, data_map: dict[str, str] | None = None,
            environ: Mapping[str, str] = os.environ, namer: StatsNamer | None = None,
            ) -> tuple[tuple[PreparedSession, ...], tuple[float, ...]]:
    """Every session with requests prepared now, and their cumulative weights for ``random.choices``."""
    namer = namer or StatsNamer()
    replayed = [s for s in sessions if s.requests]
    prepared = tuple(prepare_session(s, speed, hosts, correlate, rules, data_map, environ, namer) for s in replayed)
    for p, start in zip(prepared, starts(replayed), strict=True):
        p.start = start
        p.steps.build()
    return prepared, tuple(accumulate(s.weight for s in prepared))


def starts(sessions: list[Session]) -> tuple[float, ...]:
    """Each session's start, in seconds after the first one began (the timeline model's schedule)."""
    first = min((s.started_at for s in sessions), default=None)
    return tuple((s.started_at - first).total_seconds() for s in sessions) if first is not None else ()
