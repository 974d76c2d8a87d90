"""``replay inspect`` and ``replay schema``: looking at recordings, no runtime needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from traffic_replay.cli.app import app, out
from traffic_replay.correlation import load_rules
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.errors import report_skipped
from traffic_replay.format import session_schema
from traffic_replay.inspection import inspect_directory, render_inspection
from traffic_replay.naming import StatsNamer
from traffic_replay.readings import Look
from traffic_replay.settings import Settings


@app.command()
def inspect(
    directory: Annotated[Path, typer.Argument(help="Recordings directory.")] = Path("recordings"),
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    rules: Annotated[Path | None, typer.Option(help="TOML file of correlation rules.")] = None,
    everything: Annotated[bool, typer.Option("--all", help=(
        "Every session, correlation and warning; by default a table stops after its first rows and "
        "warnings of one kind are counted."))] = False,
    skip_bad: Annotated[bool | None, typer.Option(
        "--skip-bad", help="Inspect the good session files, naming each bad one on stderr (or REPLAY_SKIP_BAD).")
                        ] = None,
    cache: Annotated[bool | None, typer.Option(
        "--cache/--no-cache", help="Remember what detection finds, by each file's content (on by default).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where it is remembered (or REPLAY_CACHE_DIR).")] = None,
) -> None:
    """Show the sessions, endpoints, correlations and warnings of a recordings directory."""
    from traffic_replay.checks import probe_hosts  # (httpx: only for a command that may need it)

    settings = Settings.build(skip_bad=skip_bad, cache=cache, cache_dir=cache_dir)
    remembered = AnalysisCache.of(settings)
    # What `replay run` reads of each file, remembered for a run of the same stats naming: its first
    # run after an inspect then decodes nothing in the command (`traffic_replay.readings`).
    look = Look(timed=StatsNamer(settings.names, settings.name_pattern), probe=probe_hosts,
                cache=remembered.directory) if rules is None and remembered.directory is not None else None
    report, skipped = inspect_directory(directory, load_rules(rules) if rules is not None else None, settings.skip_bad,
                                        remembered, look)
    report_skipped(skipped)
    if json:
        sys.stdout.buffer.write(report.to_json() + b"\n")
    else:
        render_inspection(report, out, everything)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a session file."""
    sys.stdout.write(orjson.dumps(session_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
