"""``replay import FILE``: HAR exports and mitmproxy flow files into session files.

Both go through the live recorder's own code, configured from the same settings as
``replay record``: a ``Recorder`` addon is set up (options, filters, the directory's
redaction key) and

- a flow file (``mitmdump -w FILE``) is fed flow by flow to its ``response``/``error``
  hooks, so the exchanges, filters, redaction, session keys and the ``Sessionizer``
  are exactly those of a live recording (flows are stored in the order they finished,
  the order the live recorder sees them; idle gaps split by the flows' own times);
- a HAR file is converted by ``recorder.har`` with the addon's filter and redactor,
  one session per HAR page or per file (``--per``), since a HAR already says which
  page each request belongs to.

Run in a process of its own (it imports mitmproxy): ``python -m recorder.importer FILE
-o DIR [--per page|file]``, settings from ``REPLAY_*`` variables as the CLI passes them.
Every entry or flow is accounted for: imported, or skipped with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, hooks, http, io, master, options

from recorder.addon import Recorder, recorder_options
from recorder.har import Grouping, load_har
from recorder.sessionizer import build_session
from traffic_replay.errors import RecordingError, ReplayError
from traffic_replay.format import ClientInfo, Session, replace, write_session
from traffic_replay.settings import Settings


class FlowFileError(RecordingError):
    """A flow file that cannot be read (missing, not a flow file)."""


class DamagedInput(RecordingError):
    """The input ended early; what came before it was imported."""


@dataclass
class Imported:
    """What an import did: items read, requests imported, sessions written, items skipped and why."""

    items: int = 0
    imported: int = 0
    sessions: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(URL or flow type, reason) of every item not imported."""
    damaged: str | None = None


@contextmanager
def configured_recorder(directory: Path, settings: Settings) -> Iterator[Recorder]:
    """A ``Recorder`` with its options set as ``replay record`` would set them, writing into ``directory``."""
    loop = asyncio.new_event_loop()
    try:
        opts = options.Options()
        proxy = master.Master(opts, event_loop=loop)
        recorder = Recorder()
        proxy.addons.add(recorder)
        try:
            opts.update(**recorder_options(opts, settings.model_copy(update={"recordings": directory})))
            # Every option, defaults included, as at mitmproxy's start.
            proxy.addons.invoke_addon_sync(recorder, hooks.ConfigureHook(set(opts.keys())))
        except exceptions.OptionsError as e:
            raise RecordingError(str(e)) from e
        yield recorder
    finally:
        loop.close()


def import_flows(path: Path, directory: Path, settings: Settings) -> Imported:
    """Every flow of a ``mitmdump -w`` file through the recorder's hooks into ``directory``."""
    try:
        fh = path.open("rb")
    except OSError as e:
        raise FlowFileError(f"{path}: {e.strerror or e}") from e
    report = Imported()
    with fh, configured_recorder(directory, settings) as recorder:
        written: list[Path] = []
        save = recorder.sessionizer.on_close

        def write(session: Session) -> None:
            save(session)
            if (target := directory / f"{session.id}.json").exists():
                written.append(target)

        recorder.sessionizer.on_close = write
        try:
            for flow in io.FlowReader(fh).stream():
                _feed(recorder, flow, report)
        except exceptions.FlowReadException as e:
            if report.items == 0:
                raise FlowFileError(f"{path}: not a mitmproxy flow file ({e})") from e
            report.damaged = f"{path}: truncated or damaged after flow {report.items}: {e}"
        if report.items == 0:
            raise FlowFileError(f"{path}: not a mitmproxy flow file (no flows in it)")
        recorder.finish()
        if recorder.journal_failed:
            raise RecordingError(f"{directory}: the crash journal could not be written; the import is incomplete")
        report.imported = recorder.flows
        report.sessions = written
    return report


def _feed(recorder: Recorder, flow: Any, report: Imported) -> None:
    report.items += 1
    if not isinstance(flow, http.HTTPFlow):
        recorder.skipped += 1
        report.skipped.append((flow.type, f"not HTTP ({flow.type})"))
        return
    before = Counter(recorder.skips)
    if flow.response is None and flow.websocket is None:
        recorder.error(flow)
    else:
        recorder.response(flow)
    # The recorder counts what it leaves out by reason; the difference says why this one was.
    reasons = recorder.skips - before
    if reasons:
        reason = next(iter(reasons))
        if flow.error is not None and flow.response is None:
            reason = f"{reason}: {flow.error.msg}"
        report.skipped.append((flow.request.pretty_url, reason))


def import_har(path: Path, directory: Path, settings: Settings, per: Grouping) -> Imported:
    """A HAR file into ``directory``: one session per page (or per file), the recorder's filter and redaction."""
    with configured_recorder(directory, settings) as recorder:
        try:
            har = load_har(path, recorder.body_cap, per, recorder.filter, recorder.redactor)
        finally:
            recorder.finish()  # nothing was journaled: this deletes the journal it opened
        report = Imported(items=har.entries, skipped=[(url, reason) for _, url, reason in har.skipped])
        for group in har.groups:
            agent = next((v for x in group.exchanges for k, v in x.headers if k.lower() == "user-agent"), "")
            session = build_session(("", agent), group.exchanges, session_id=group.id)
            session = replace(session, name=group.title, client=ClientInfo(user_agent=agent or None))
            try:
                report.sessions.append(write_session(session, directory))
            except OSError as e:
                raise RecordingError(f"{directory}: cannot write session {session.id}: {e.strerror or e}") from e
            report.imported += len(group.exchanges)
    return report


def render(report: Imported, source: Path, directory: Path) -> list[str]:
    """The summary lines: what was imported, then each reason for skipping with its count and an example."""
    lines = [f"replay: imported {report.imported} of {report.items} requests from {source} "
             f"into {len(report.sessions)} sessions in {directory}/"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)}:")
        by_reason = Counter(reason for _, reason in report.skipped)
        for reason, count in by_reason.most_common():
            example = next(url for url, r in report.skipped if r == reason)
            lines.append(f"  {count:>6}  {reason}  (e.g. {example[:100]})")
    return lines


def _is_har(path: Path) -> bool:
    # By content, not name: a HAR is JSON, a flow file is tnetstrings (it starts with a digit).
    try:
        with path.open("rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return path.suffix.lower() == ".har"
    return head.startswith((b"{", b"[")) or (not head and path.suffix.lower() == ".har")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="replay import", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=None)
    parser.add_argument("--per", choices=["page", "file"], default=None)
    args = parser.parse_args(argv)
    source: Path = args.file
    try:
        settings = Settings.of_process()
        if args.per is not None:
            settings = settings.model_copy(update={"import_per": args.per})
        directory: Path = args.output or settings.recordings
        if not source.is_file():
            raise RecordingError(f"{source}: no such file" if not source.exists() else f"{source}: not a file")
        if directory.exists() and not directory.is_dir():
            raise RecordingError(f"{directory}: exists and is not a directory")
        if _is_har(source):
            report = import_har(source, directory, settings, settings.import_per)
        else:
            report = import_flows(source, directory, settings)
        for line in render(report, source, directory):
            print(line, file=sys.stderr)
        for path in report.sessions:
            print(path)
        if report.damaged:
            raise DamagedInput(report.damaged)
    except ReplayError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
