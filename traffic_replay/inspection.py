"""What ``replay inspect`` shows: sessions, endpoints, hosts, weights."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, NamedTuple

import msgspec
from msgspec import Meta, Struct, field
from rich.console import Console
from rich.table import Table

from traffic_replay.correlation import Rule, apply_rules, unsourced_values
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.correlation.secrets import session_secrets
from traffic_replay.errors import RecordingError, SessionFileError
from traffic_replay.fanout import map_spread
from traffic_replay.format import Session, file_digest, read_session, refuse_unusable, session_files, uncollected
from traffic_replay.hosts import unreplayable
from traffic_replay.naming import endpoint_template
from traffic_replay.readings import Look, keep


class SessionRow(Struct, kw_only=True, gc=False):
    id: str
    name: str
    requests: int
    duration_s: float
    hosts: list[str]
    weight: float


class EndpointRow(Struct, kw_only=True, gc=False):
    method: str
    name: str
    requests: int
    sessions: int
    statuses: dict[str, int]


class CorrelationRow(Struct, kw_only=True, gc=False):
    session: str
    value: str
    sources: Annotated[list[str], Meta(description="Where the live value is read, e.g. 'step 4 JSON listing.id'.")]
    uses: Annotated[list[str], Meta(description="Where it is sent, e.g. 'step 5 path'.")]
    rule: str | None = None


class SecretRow(Struct, kw_only=True, gc=False):
    placeholder: Annotated[str, Meta(description="The redacted value as recorded, e.g. '«redacted:1a2b3c4d»'.")]
    variable: Annotated[str, Meta(description="Where a replay takes its value from, e.g. 'REPLAY_SECRET_1A2B3C4D'.")]
    session: str
    sent_in: Annotated[list[str], Meta(description="Where it is sent, e.g. 'step 2 body'.")]


class SkippedFileRow(Struct, kw_only=True, gc=False):
    path: str
    problem: Annotated[str, Meta(description="What is wrong with it, as the error without --skip-bad says it.")]


class Inspection(Struct, kw_only=True):
    """What ``replay inspect --json`` prints (msgspec structs: a busy recording has a row per
    correlation, hundreds of thousands of them, and a validating model per row cost seconds)."""

    sessions: list[SessionRow]
    endpoints: list[EndpointRow]
    hosts: list[str]
    total_requests: int
    correlations: list[CorrelationRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    secrets: Annotated[list[SecretRow], Meta(description=(
        "Redacted values a replay must be given (REPLAY_SECRET_… or a --data-map column), session by session."))] = \
        field(default_factory=list)
    skipped_files: Annotated[list[SkippedFileRow], Meta(description=(
        "Bad session files left out (--skip-bad): not in the figures above."))] = field(default_factory=list)

    def to_json(self) -> bytes:
        """Indented JSON, fields in their declared order."""
        return msgspec.json.format(msgspec.json.encode(self), indent=2)


def _short(value: str) -> str:
    return value if len(value) <= 24 else value[:21] + "…"


def _correlations(session: Session, file_digest: str | None, rules: list[Rule], cache: AnalysisCache,
                  look: Look | None = None) -> tuple[list[CorrelationRow], list[str], list[SecretRow]]:
    analysis = cache.analyse(session, file_digest)
    found = analysis.correlations
    if rules:
        found = apply_rules(session, rules, found)
    rows = [CorrelationRow(session=session.name, value=_short(c.value), rule=c.rule,
                           sources=[f"step {s.step + 1} {s.describe()}" for s in c.sources],
                           uses=[f"step {u.step + 1} {u.describe()}" for u in c.uses])
            for c in found]
    warnings = [f"session {session.name!r} step {u.step + 1}: {_short(u.value)} in the {u.place} looks issued by the"
                f" server but no earlier response has it: it will be sent as recorded (add a rule?)"
                for u in unsourced_values(session, found)]
    carried = {c.value for c in found}
    warnings += [f"session {session.name!r} step {r.step + 1}: {_short(r.value)} in the {r.place} matches step"
                 f" {r.source.step + 1} {r.source.describe()} but is sent as recorded: {r.reason} (add a rule?)"
                 for r in analysis.rejected if r.value not in carried]
    for step, request in enumerate(session.requests, start=1):
        if reason := unreplayable(request):
            warnings.append(f"session {session.name!r} step {step}: {request.method} {request.path} is {reason}:"
                            " skipped at replay")
    needed = session_secrets(session, found)
    if look is not None and file_digest is not None and not rules:
        keep(session, file_digest, look, needed)  # (what a replay's read of the file would work out)
    secrets = [SecretRow(placeholder=s.placeholder, variable=s.env, session=s.session,
                         sent_in=[f"step {u.step + 1} {u.describe()}" for u in s.uses])
               for s in needed]
    return rows, warnings, secrets


class _Seen(NamedTuple):
    """All that inspect shows of one session, worked out where it was read: only this travels back."""

    row: SessionRow
    endpoints: dict[tuple[str, str], Counter[str]]
    """(method, name) -> how many of its answers had each status."""
    correlations: list[CorrelationRow]
    warnings: list[str]
    secrets: list[SecretRow]


def _seen(item: tuple[Session, str | None], rules: list[Rule], cache: AnalysisCache, look: Look | None = None,
          ) -> _Seen:
    session, file_digest = item
    endpoints: dict[tuple[str, str], Counter[str]] = {}
    for request in session.requests:
        key = (request.method, endpoint_template(request.path))
        if (statuses := endpoints.get(key)) is None:
            statuses = endpoints[key] = Counter()
        statuses[str(request.response.status) if request.response else "none"] += 1
    row = SessionRow(id=session.id, name=session.name, requests=len(session.requests),
                     duration_s=round(session.duration_ms / 1000, 3), hosts=session.hosts, weight=session.weight)
    return _Seen(row, endpoints, *_correlations(session, file_digest, rules, cache, look))


def _read_seen(path: Path, rules: list[Rule], cache: AnalysisCache, look: Look | None = None,
               ) -> _Seen | tuple[str, str]:
    """``_seen`` of a session file, or (its path, what is wrong with it): an error's own arguments do not pickle."""
    try:
        session, raw = read_session(path)
    except SessionFileError as e:
        return str(e.path), e.detail
    known = file_digest(raw) if cache.directory is not None else None
    del raw  # (not held while the session is analysed: it is as big again)
    return _seen((session, known), rules, cache, look)


def _assembled(seen: Sequence[_Seen], skipped: Sequence[SessionFileError]) -> Inspection:
    statuses: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    in_sessions: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for one in seen:
        for key, counted in one.endpoints.items():
            statuses[key].update(counted)
            in_sessions[key].add(one.row.id)
    return Inspection(
        sessions=[one.row for one in seen],
        endpoints=[EndpointRow(method=m, name=n, requests=sum(counted.values()), sessions=len(in_sessions[(m, n)]),
                               statuses=dict(sorted(counted.items())))
                   for (m, n), counted in sorted(statuses.items(), key=lambda kv: (kv[0][1], kv[0][0]))],
        hosts=sorted({h for one in seen for h in one.row.hosts}),
        total_requests=sum(one.row.requests for one in seen),
        correlations=[row for one in seen for row in one.correlations],
        warnings=[w for one in seen for w in one.warnings],
        secrets=[row for one in seen for row in one.secrets],
        skipped_files=[SkippedFileRow(path=str(e.path), problem=e.detail) for e in skipped],
    )


def inspect_sessions(sessions: list[Session], rules: list[Rule] | None = None,
                     skipped: Sequence[SessionFileError] = (), digests: Sequence[str] = (),
                     cache: AnalysisCache | None = None) -> Inspection:
    """What ``replay inspect`` shows of sessions in memory; ``digests`` (each session file's) let ``cache``
    remember what detection finds."""
    known: Sequence[str | None] = digests or [None] * len(sessions)
    with uncollected():  # (rows by the hundred thousand, in the children and as they come back)
        seen = map_spread(partial(_seen, rules=rules or [], cache=cache or AnalysisCache(None)),
                          list(zip(sessions, known, strict=True)), [len(s.requests) for s in sessions])
    return _assembled(seen, skipped)


BYTES_PER_REQUEST = 1_000
"""About what a recorded request takes in a session file (~1,100 bytes compact): enough to tell whether
a directory is worth reading over the cores."""


def inspect_directory(directory: Path, rules: list[Rule] | None = None, skip_bad: bool = False,
                      cache: AnalysisCache | None = None, look: Look | None = None,
                      ) -> tuple[Inspection, list[SessionFileError]]:
    """What ``replay inspect DIR`` shows, and the bad files it left out (``skip_bad``; else they are refused
    as ``format.read_recordings`` refuses them). Each file is read, analysed and described where it is read,
    over the cores, so no process holds the whole recording: only what is shown comes back. ``look``: what a
    replay's read of each file finds is remembered for a replay that looks so (``readings.keep``; not with
    ``rules``)."""
    files = session_files(directory)
    if not files:
        raise RecordingError(f"{directory}: no session files (*.json) in this directory")
    sizes = [path.stat().st_size if path.is_file() else 0 for path in files]
    with uncollected():
        found = map_spread(partial(_read_seen, rules=rules or [], cache=cache or AnalysisCache(None), look=look),
                           files,
                           [size // BYTES_PER_REQUEST for size in sizes])
    seen = [one for one in found if isinstance(one, _Seen)]
    skipped = [SessionFileError(Path(one[0]), one[1]) for one in found if not isinstance(one, _Seen)]
    refuse_unusable(directory, skipped, [one.row.requests for one in seen], skip_bad)
    return _assembled(seen, skipped), skipped


SHOWN = 20
"""Rows of a table (and warnings) shown before the rest is counted: a recording of a busy hour has
thousands of sessions and correlations, which a terminal cannot show usefully (``--all`` does)."""
_WARNING_HEAD = re.compile(r"^session '(?:[^'\\]|\\.)*' step \d+: \S+ ")


def _listed(items: list[str], everything: bool, shown: int = 3) -> str:
    """The first places of a value (a bearer token is sent by every request of a long session)."""
    if everything or len(items) <= shown:
        return ", ".join(items)
    return ", ".join(items[:shown]) + f" … and {len(items) - shown:,} more"


def _more(table: Table, shown: int, total: int, what: str) -> None:
    if total > shown:
        table.add_row(f"… {total - shown:,} more {what}", *([""] * (len(table.columns) - 1)))


def render_inspection(report: Inspection, console: Console, everything: bool = False) -> None:
    shown = None if everything else SHOWN
    sessions = Table(title=f"{len(report.sessions):,} sessions, {report.total_requests:,} requests",
                     title_justify="left")
    for column in ("session", "name", "requests", "duration s", "hosts", "weight"):
        sessions.add_column(column, justify="right" if column in ("requests", "duration s", "weight") else "left")
    for s in report.sessions[:shown]:
        sessions.add_row(s.id, s.name, str(s.requests), f"{s.duration_s:.1f}", ", ".join(s.hosts), f"{s.weight:g}")
    _more(sessions, len(report.sessions[:shown]), len(report.sessions), "sessions")
    console.print(sessions)
    if report.skipped_files:
        console.print(f"{len(report.skipped_files):,} bad session files skipped (--skip-bad), not counted above",
                      highlight=False, markup=False)
    endpoints = Table(title=f"{len(report.endpoints)} endpoints", title_justify="left")
    for column in ("method", "endpoint", "requests", "sessions", "statuses"):
        endpoints.add_column(column, justify="right" if column in ("requests", "sessions") else "left")
    for e in report.endpoints[:None if everything else 5 * SHOWN]:
        endpoints.add_row(e.method, e.name, str(e.requests), str(e.sessions),
                          " ".join(f"{k}×{v}" for k, v in e.statuses.items()))
    _more(endpoints, len(report.endpoints[:None if everything else 5 * SHOWN]), len(report.endpoints), "endpoints")
    console.print(endpoints)
    if report.correlations:
        table = Table(title=f"{len(report.correlations):,} correlations (carried over live at replay)",
                      title_justify="left")
        for column in ("session", "value", "from", "sent in"):
            table.add_column(column)
        for c in report.correlations[:shown]:
            table.add_row(c.session, c.value, ", ".join(c.sources[:2]) + (" …" if len(c.sources) > 2 else ""),
                          _listed(c.uses, everything))
        _more(table, len(report.correlations[:shown]), len(report.correlations), "correlations")
        console.print(table)
    if report.secrets:
        count = len({s.variable for s in report.secrets})
        needed = Table(title=f"{count} secret{'s' if count != 1 else ''} to supply (REPLAY_SECRET_… variables,"
                             " or --data-map COLUMN=PLACEHOLDER)", title_justify="left")
        for column in ("placeholder", "variable", "session", "sent in"):
            needed.add_column(column)
        for secret in report.secrets[:shown]:
            needed.add_row(secret.placeholder, secret.variable, secret.session, _listed(secret.sent_in, everything))
        _more(needed, len(report.secrets[:shown]), len(report.secrets), "sessions that send secrets")
        console.print(needed)
    for warning, count in _warnings(report.warnings, everything):
        more = f" [dim](and {count - 1:,} more like it)[/]" if count > 1 else ""
        console.print(f"[yellow]warning:[/] {warning}{more}", highlight=False)
    if not everything and len(report.warnings) > SHOWN:
        console.print(f"{len(report.warnings):,} warnings in all: replay inspect --all shows every one, --json too")


def _warnings(warnings: list[str], everything: bool) -> list[tuple[str, int]]:
    """Every warning, or when there are many, the first of each kind with how many are like it."""
    if everything or len(warnings) <= SHOWN:
        return [(w, 1) for w in warnings]
    first: dict[str, str] = {}
    alike: Counter[str] = Counter()
    for warning in warnings:
        kind = _WARNING_HEAD.sub("", warning)
        first.setdefault(kind, warning)
        alike[kind] += 1
    return [(first[kind], alike[kind]) for kind in list(first)[:SHOWN]]
