"""``replay run --dry-run``: what each session would send where, and what it would skip.

Runs the same preparation as a replay (host map, correlation, rules, data, secrets), from
the payload ``replay run`` read, in a process of its own, without Locust and without
sending anything.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from replayer.loading import prepare_workload
from replayer.prepared import PreparedSession
from traffic_replay.errors import ReplayError, report_error
from traffic_replay.payload import read_workload, take_over
from traffic_replay.settings import Settings


def _origin(session: PreparedSession, var: int, index: int) -> str:
    """Where a value sent at step ``index`` comes from, e.g. "1000 ← step 4 JSON listing.id"."""
    variable = session.variables[var]
    shown = variable.value if len(variable.value) <= 16 else variable.value[:13] + "…"
    before = [s for s in variable.sources if s.step + 1 < index]
    if before:
        return f"{shown} ← step {before[-1].step + 1} {before[-1].describe()}"
    return f"{shown} ← {variable.rule or 'recorded value, no live source'}"


def render_plan(sessions: tuple[PreparedSession, ...], host: str, console: Console) -> None:
    for session in sessions:
        table = Table(title=f"session {session.name!r} (weight {session.weight:g}, {len(session.steps)} steps)",
                      title_justify="left")
        for column in ("step", "request", "live values", "note"):
            table.add_column(column, justify="right" if column == "step" else "left")
        for step in session.steps:
            url = step.url if step.url.startswith(("http://", "https://")) else host + step.url
            used = [_origin(session, v, step.index) for v in step.patch.variables] if step.patch else []
            extracted = [session.variables[v].sources[0].describe() for v, _ in step.extract
                         if session.variables[v].sources]
            notes = [f"skipped: {step.skip}"] if step.skip else []
            if extracted:
                notes.append("extracts " + ", ".join(sorted(set(extracted))))
            table.add_row(str(step.index), f"{step.method} {url}", ", ".join(used), "; ".join(notes))
        console.print(table)
        if session.missing:
            console.print(f"[bold red]cannot replay:[/] {session.missing}", highlight=False)
    sent = sum(1 for s in sessions for step in s.steps if step.skip is None and s.missing is None)
    total = sum(len(s.steps) for s in sessions)
    console.print(f"dry run: {sent} of {total} requests would be sent to {host} or a mapped host; nothing was sent")


def main() -> int:
    settings = Settings.of_process()
    try:
        payload = take_over()
        sessions = prepare_workload(payload.open() if payload is not None else read_workload(settings))
    except ReplayError as e:
        return report_error(e)
    render_plan(sessions, settings.host or "", Console(width=None if sys.stdout.isatty() else 160))
    return 0


if __name__ == "__main__":
    sys.exit(main())
