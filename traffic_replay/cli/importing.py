"""``replay import`` and ``replay recover``: the recorder's code, run in a process of its own.

Both need the recorder side (its filters, redaction and sessionizer; for flow files,
mitmproxy itself), which this package must not import: the command builds the
settings and execs ``python -m recorder.importer`` or ``python -m recorder.journal``,
handing the settings over as ``REPLAY_*`` variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from traffic_replay.cli.app import app
from traffic_replay.settings import Settings


def _exec(module: str, args: list[str], settings: Settings) -> NoReturn:
    sys.stdout.flush()
    os.environ.update(settings.environ())
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A HAR export (browser, Playwright) or a `mitmdump -w` flow file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Recordings directory to write to.")] = None,
    per: Annotated[Literal["file", "page"] | None, typer.Option(
        help="HAR: one session per file (a user's journey) or per HAR page. [default: file]")] = None,
    body_cap: Annotated[int | None, typer.Option(help="Bytes of each response body kept.")] = None,
    idle_gap: Annotated[float | None, typer.Option(help="Flow files: seconds of silence that end a session.")] = None,
    session_key: Annotated[str | None, typer.Option(
        help="Flow files: 'client' (address + User-Agent), 'cookie:NAME' or 'header:NAME'.")] = None,
    max_session: Annotated[float | None, typer.Option(help="Flow files: seconds after which a session is split.")]
    = None,
    allow_host: Annotated[list[str] | None, typer.Option(help="Import only this host (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Leave out URLs matching this regular expression (repeatable).")] = None,
    static: Annotated[bool | None, typer.Option(
        "--static/--no-static", help="Keep static assets (images, fonts, CSS, JS, media). [default: static]")] = None,
    redact: Annotated[bool | None, typer.Option(
        "--redact/--no-redact", help="Redact secrets before writing them. [default: redact]")] = None,
    redact_header: Annotated[list[str] | None, typer.Option(help="Also redact this header (repeatable).")] = None,
    redact_field: Annotated[list[str] | None, typer.Option(
        help="Also redact this JSON, form or query field (repeatable).")] = None,
    redaction_key_file: Annotated[Path | None, typer.Option(
        help="Redaction key file to use (created if missing) instead of the directory's own: shares placeholders.")]
    = None,
) -> NoReturn:
    """Import a HAR file or a mitmproxy flow file as session files, with the recorder's filters and redaction."""
    settings = Settings.build(recordings=output, import_per=per, body_cap=body_cap, idle_gap=idle_gap,
                              session_key=session_key, max_session=max_session, allow_host=allow_host,
                              exclude=exclude, static=static, redact=redact, redact_header=redact_header,
                              redact_field=redact_field, redaction_key_file=redaction_key_file)
    _exec("recorder.importer", [str(file), "-o", str(settings.recordings)], settings)


@app.command()
def recover(
    directory: Annotated[Path, typer.Argument(help="Recordings directory of the interrupted recording.")]
    = Path("recordings"),
) -> NoReturn:
    """Write the sessions of a recorder that was killed (its crash journal) as session files."""
    _exec("recorder.journal", [str(directory)], Settings.build())
