"""``replay record``: mitmproxy with the recorder addon, in a process of its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from traffic_replay.cli.app import app
from traffic_replay.errors import RecordingError
from traffic_replay.settings import Settings


@app.command()
def record(
    directory: Annotated[Path, typer.Argument(help="Where session files are written.")] = Path("recordings"),
    mode: Annotated[str | None, typer.Option(help="'regular' (explicit proxy) or 'reverse:URL'.")] = None,
    listen_host: Annotated[str | None, typer.Option(help="Proxy address.")] = None,
    listen_port: Annotated[int | None, typer.Option(help="Proxy port.")] = None,
    idle_gap: Annotated[float | None, typer.Option(help="Seconds of silence that end a session.")] = None,
    body_cap: Annotated[int | None, typer.Option(help="Bytes of each response body kept.")] = None,
) -> NoReturn:
    """Record traffic through a mitmproxy proxy into session files (Ctrl-C writes and stops)."""
    settings = Settings.build(mode=mode, listen_host=listen_host, listen_port=listen_port, idle_gap=idle_gap,
                              body_cap=body_cap)
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"{directory}: exists and is not a directory")
    args = [sys.executable, "-m", "recorder", "--mode", settings.mode,
            "--listen-host", settings.listen_host, "--listen-port", str(settings.listen_port),
            "--set", f"replay_dir={directory}", "--set", f"replay_idle_gap={settings.idle_gap}",
            "--set", f"replay_body_cap={settings.body_cap}", "--set", "flow_detail=0",
            "--set", f"termlog_verbosity={'debug' if settings.debug else 'warn'}"]
    sys.stdout.flush()
    # exec, so that Ctrl-C and SIGTERM reach mitmproxy itself, which writes every open session.
    os.execv(sys.executable, args)
