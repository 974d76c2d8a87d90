"""What ``replay inspect`` shows: sessions, endpoints, hosts, weights."""

from __future__ import annotations

from collections import Counter, defaultdict

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from traffic_replay.format import Session
from traffic_replay.naming import endpoint_template


class SessionRow(BaseModel):
    id: str
    name: str
    requests: int
    duration_s: float
    hosts: list[str]
    weight: float


class EndpointRow(BaseModel):
    method: str
    name: str
    requests: int
    sessions: int
    statuses: dict[str, int]


class Inspection(BaseModel):
    sessions: list[SessionRow]
    endpoints: list[EndpointRow]
    hosts: list[str]
    total_requests: int


def inspect_sessions(sessions: list[Session]) -> Inspection:
    counts: Counter[tuple[str, str]] = Counter()
    statuses: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    in_sessions: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for session in sessions:
        for request in session.requests:
            key = (request.method, endpoint_template(request.path))
            counts[key] += 1
            in_sessions[key].add(session.id)
            statuses[key][str(request.response.status) if request.response else "none"] += 1
    return Inspection(
        sessions=[SessionRow(id=s.id, name=s.name, requests=len(s.requests), duration_s=round(s.duration_ms / 1000, 3),
                             hosts=s.hosts, weight=s.weight) for s in sessions],
        endpoints=[EndpointRow(method=m, name=n, requests=c, sessions=len(in_sessions[(m, n)]),
                               statuses=dict(sorted(statuses[(m, n)].items())))
                   for (m, n), c in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))],
        hosts=sorted({h for s in sessions for h in s.hosts}),
        total_requests=sum(len(s.requests) for s in sessions),
    )


def render_inspection(report: Inspection, console: Console) -> None:
    sessions = Table(title=f"{len(report.sessions)} sessions, {report.total_requests} requests", title_justify="left")
    for column in ("session", "name", "requests", "duration s", "hosts", "weight"):
        sessions.add_column(column, justify="right" if column in ("requests", "duration s", "weight") else "left")
    for s in report.sessions:
        sessions.add_row(s.id, s.name, str(s.requests), f"{s.duration_s:.1f}", ", ".join(s.hosts), f"{s.weight:g}")
    console.print(sessions)
    endpoints = Table(title=f"{len(report.endpoints)} endpoints", title_justify="left")
    for column in ("method", "endpoint", "requests", "sessions", "statuses"):
        endpoints.add_column(column, justify="right" if column in ("requests", "sessions") else "left")
    for e in report.endpoints:
        endpoints.add_row(e.method, e.name, str(e.requests), str(e.sessions),
                          " ".join(f"{k}×{v}" for k, v in e.statuses.items()))
    console.print(endpoints)
