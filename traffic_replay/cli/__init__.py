"""The ``replay`` command line: builds the settings, calls the core, runs the two runtimes.

Recording runs mitmproxy (asyncio) and replaying runs Locust (gevent), each in a
process of its own started from here; nothing in this package imports either.
One module per group of commands: ``recording``, ``replaying``, ``inspecting``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from traffic_replay.cli import importing, inspecting, recording, replaying  # noqa: F401  (they register the commands)
from traffic_replay.cli.app import app
from traffic_replay.errors import INTERRUPTED, OK, ConfigError, InternalError, ReplayError, exit_with

__all__ = ["app", "main"]

# Click's usage error, wherever this Typer keeps its Click (newer ones vendor it): the base of BadParameter.
_UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """Entry point: every ``ReplayError`` becomes ``error: ...`` lines and a non-zero exit."""
    debug = "--debug" in sys.argv or os.environ.get("REPLAY_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        # Click's own error box would be several lines: a usage error is one, like every other.
        code = app(standalone_mode=False, prog_name="replay")
    except _UsageError as e:
        if debug:
            raise
        command = e.ctx.command_path if e.ctx is not None else "replay"
        exit_with(ConfigError(f"{e.format_message()} (see {command} --help)"))  # Click's code for it is 2 too
    except typer.Abort:
        sys.exit(INTERRUPTED)
    except ReplayError as e:
        if debug:
            raise
        exit_with(e)
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        exit_with(InternalError(e))
    sys.exit(code if isinstance(code, int) else OK)
