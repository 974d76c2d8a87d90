"""``replay record``: mitmproxy with the recorder addon, in a process of its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from traffic_replay.cli.app import app, err
from traffic_replay.errors import RecordingError
from traffic_replay.listening import check_free, open_door
from traffic_replay.settings import Settings


@app.command()
def record(
    directory: Annotated[Path | None, typer.Argument(
        help="Where session files are written (or REPLAY_RECORDINGS). [default: recordings]")] = None,
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
    redaction_key_file: Annotated[Path | None, typer.Option(
        help="Redaction key file to use (created if missing) instead of the directory's own: shares placeholders.")]
    = None,
    ca_dir: Annotated[Path | None, typer.Option(help="Where mitmproxy keeps its CA (default ~/.mitmproxy).")] = None,
    ssl_insecure: Annotated[bool | None, typer.Option(
        "--ssl-insecure", help="Do not verify the certificates of recorded HTTPS servers.")] = None,
    live: Annotated[bool | None, typer.Option(
        "--live/--no-live", help="Live counters on stderr while recording; on by default.")] = None,
    journal_fsync: Annotated[float | None, typer.Option(
        help="Seconds between fsyncs of the crash journal (0: every flow).")] = None,
) -> NoReturn:
    """Record traffic through a mitmproxy proxy into session files (Ctrl-C writes and stops)."""
    settings = Settings.build(recordings=directory, mode=mode, listen_host=listen_host, listen_port=listen_port,
                              idle_gap=idle_gap, body_cap=body_cap, session_key=session_key, max_session=max_session,
                              allow_host=allow_host, exclude=exclude, static=static, redact=redact,
                              redact_header=redact_header, redact_field=redact_field,
                              redaction_key_file=redaction_key_file, ca_dir=ca_dir,
                              ssl_insecure=ssl_insecure, journal_fsync=journal_fsync, live=live)
    directory = settings.recordings
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"{directory}: exists and is not a directory")
    try:
        # Here rather than in mitmproxy: a failed option there is rolled back to the default
        # directory, which the addon would then create in the working directory.
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RecordingError(f"{directory}: cannot create directory: {e.strerror or e}") from e
    if warning := open_door(settings.listen_host, "the recording proxy", "--listen-host"):
        err.print(warning, highlight=False, markup=False, soft_wrap=True)
    check_free(settings.listen_host, settings.listen_port, "--listen-port")
    # mitmproxy's own options here; the recorder's (replay_*) reach its addon through the settings.
    args = [sys.executable, "-m", "recorder", "--mode", settings.mode,
            "--listen-host", settings.listen_host, "--listen-port", str(settings.listen_port),
            "--set", "flow_detail=0", "--set", f"termlog_verbosity={'debug' if settings.debug else 'warn'}",
            "--set", f"ssl_insecure={str(settings.ssl_insecure).lower()}"]
    if settings.ca_dir is not None:
        args += ["--set", f"confdir={settings.ca_dir}"]
    sys.stdout.flush()
    # exec, so that Ctrl-C and SIGTERM reach mitmproxy itself, which writes every open session.
    os.execve(sys.executable, args, {**os.environ, **settings.environ()})
