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
    mode: Annotated[str | None, typer.Option(
        help="'regular' (explicit proxy), 'reverse:URL' or 'upstream:PROXY_URL'.")] = None,
    listen_host: Annotated[str | None, typer.Option(help="Proxy address.")] = None,
    listen_port: Annotated[int | None, typer.Option(help="Proxy port.")] = None,
    idle_gap: Annotated[float | None, typer.Option(help="Seconds of silence that end a session.")] = None,
    body_cap: Annotated[int | None, typer.Option(help="Bytes of each response body kept.")] = None,
    session_key: Annotated[str | None, typer.Option(
        help="What makes a session: 'client' (address + User-Agent), 'cookie:NAME' or 'header:NAME'.")] = None,
    max_session: Annotated[float | None, typer.Option(help="Seconds after which a session is split.")] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        help="Record only this host (repeatable): example.com, example.com:8443, *.example.com.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Do not record URLs matching this regular expression (repeatable).")] = None,
    static: Annotated[bool | None, typer.Option(
        "--static/--no-static", help="Record static assets (images, fonts, CSS, JS, media); on by default.")] = None,
    redact: Annotated[bool | None, typer.Option(
        "--redact/--no-redact", help="Redact secrets before writing them; on by default.")] = None,
    redact_header: Annotated[list[str] | None, typer.Option(
        help="Also redact this header's values (repeatable).")] = None,
    redact_field: Annotated[list[str] | None, typer.Option(
        help="Also redact this JSON, form or query field (repeatable).")] = None,
    ca_dir: Annotated[Path | None, typer.Option(help="Where mitmproxy keeps its CA (default ~/.mitmproxy).")] = None,
    ssl_insecure: Annotated[bool | None, typer.Option(
        "--ssl-insecure", help="Do not verify the certificates of recorded HTTPS servers.")] = None,
    live: Annotated[bool | None, typer.Option(
        "--live/--no-live", help="Live counters on stderr while recording; on by default.")] = None,
    journal_fsync: Annotated[float | None, typer.Option(
        help="Seconds between fsyncs of the crash journal (0: every flow).")] = None,
) -> NoReturn:
    """Record traffic through a mitmproxy proxy into session files (Ctrl-C writes and stops)."""
    settings = Settings.build(mode=mode, listen_host=listen_host, listen_port=listen_port, idle_gap=idle_gap,
                              body_cap=body_cap, session_key=session_key, max_session=max_session,
                              allow_host=allow_host, exclude=exclude, static=static, redact=redact,
                              redact_header=redact_header, redact_field=redact_field, ca_dir=ca_dir,
                              ssl_insecure=ssl_insecure, journal_fsync=journal_fsync, live=live)
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"{directory}: exists and is not a directory")
    try:
        # Here rather than in mitmproxy: a failed option there is rolled back to the default
        # directory, which the addon would then create in the working directory.
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RecordingError(f"{directory}: cannot create directory: {e.strerror or e}") from e
    args = [sys.executable, "-m", "recorder", "--mode", settings.mode,
            "--listen-host", settings.listen_host, "--listen-port", str(settings.listen_port),
            "--set", f"replay_dir={directory}", "--set", f"replay_idle_gap={settings.idle_gap}",
            "--set", f"replay_body_cap={settings.body_cap}", "--set", "flow_detail=0",
            "--set", f"termlog_verbosity={'debug' if settings.debug else 'warn'}",
            "--set", f"replay_session_key={settings.session_key}",
            "--set", f"replay_max_session={settings.max_session or ''}",
            "--set", f"replay_static={str(settings.static).lower()}",
            "--set", f"replay_redact={str(settings.redact).lower()}",
            "--set", f"ssl_insecure={str(settings.ssl_insecure).lower()}",
            "--set", f"replay_live={str(settings.live).lower()}",
            "--set", f"replay_journal_fsync={settings.journal_fsync}"]
    for option, values in (("replay_allow_host", settings.allow_host), ("replay_exclude", settings.exclude),
                           ("replay_redact_header", settings.redact_header),
                           ("replay_redact_field", settings.redact_field)):
        args += [arg for value in values for arg in ("--set", f"{option}={value}")]  # repeated --set appends
    if settings.ca_dir is not None:
        args += ["--set", f"confdir={settings.ca_dir}"]
    sys.stdout.flush()
    # exec, so that Ctrl-C and SIGTERM reach mitmproxy itself, which writes every open session.
    os.execv(sys.executable, args)
