"""The Typer app and the consoles every command prints to."""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from typing import Annotated

import typer
from rich.console import Console

from traffic_replay.errors import ConfigError

app = typer.Typer(help="Record real user traffic with mitmproxy; replay it as a Locust load test.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

# Piped output gets a wide page rather than rich's 80 columns, so that tables stay readable in logs.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False) -> None:
    if debug:
        os.environ["REPLAY_DEBUG"] = "true"


def module_file(name: str) -> str:
    """The file of one of our modules, found without importing it (and its runtime)."""
    spec = find_spec(name)
    if spec is None or spec.origin is None:
        raise ConfigError(f"cannot find module {name}: is traffic-replay installed?")
    return spec.origin
