"""``replay import FILE``: HAR exports and mitmproxy flow files into session files.

Both are fed to the live recorder's own ``Pipeline`` (``recorder.pipeline``), configured
by the ``Recorder`` addon from the same settings as ``replay record`` (options, filters,
the directory's redaction key), through its public API:

- a flow file (``mitmdump -w FILE``) flow by flow, each as the addon's ``response`` hook
  makes it (``recorder.exchange``), so the exchanges, filters, redaction, session keys
  and sessions are exactly those of a live recording (flows are stored in the order they
  finished, the order the live recorder sees them; idle gaps split by the flows' own times);
- a HAR file entry by entry (``recorder.har``), each into the session of its HAR page or
  of the whole file (``--per``), since a HAR already says which page each request
  belongs to.

Run in a process of its own (it imports mitmproxy): ``python -m recorder.importer FILE
-o DIR [--per page|file]``, settings from ``REPLAY_*`` variables as the CLI passes them.
Every entry or flow is accounted for: imported, or skipped with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, hooks, http, io, master, options

from recorder.addon import Recorder, recorder_options
from recorder.exchange import NON_HTTP, WEBSOCKET, captured, failure_reason
from recorder.har import Grouping, HarFile, entry_captured, entry_url, group_id, page_key
from recorder.pipeline import Captured, Pipeline
from recorder.sessionizer import Closed
from recorder.sessionkeys import Keyed
from traffic_replay.errors import RecordingError, ReplayError
from traffic_replay.format import ClientInfo, Session
from traffic_replay.settings import Settings

JOURNAL_BATCH = 1 << 20
"""A HAR import's journal bytes per ``write()``: a crash loses nothing the HAR itself does not still hold."""


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
def configured_pipeline(directory: Path, settings: Settings) -> Iterator[Pipeline]:
    """The recorder's ``Pipeline``, its options set as ``replay record`` would set them, writing into ``directory``.

    Configured through the addon itself (options, filters, the directory's redaction key),
    so that an import and a live recording can never parse a setting differently.
    """
    loop = asyncio.new_event_loop()
    try:
        opts = options.Options()
        proxy = master.Master(opts, event_loop=loop)
        recorder = Recorder()
        proxy.addons.add(recorder)
        try:
            opts.update(**recorder_options(opts, _into(settings, directory)))
            # Every option, defaults included, as at mitmproxy's start.
            proxy.addons.invoke_addon_sync(recorder, hooks.ConfigureHook(set(opts.keys())))
        except exceptions.OptionsError as e:
            raise RecordingError(str(e)) from e
        yield recorder.pipeline
    finally:
        loop.close()


def _into(settings: Settings, directory: Path) -> Settings:
    # The one copy of the settings an import makes (the settings class is pydantic's).
    return settings.model_copy(update={"recordings": directory})


def _finished(pipeline: Pipeline, directory: Path, report: Imported) -> None:
    pipeline.finish()
    if pipeline.journal_failed:
        raise RecordingError(f"{directory}: the crash journal could not be written; the import is incomplete")
    report.imported = pipeline.flows


def import_flows(path: Path, directory: Path, settings: Settings) -> Imported:
    """Every flow of a ``mitmdump -w`` file through the recorder's pipeline into ``directory``."""
    try:
        fh = path.open("rb")
    except OSError as e:
        raise FlowFileError(f"{path}: {e.strerror or e}") from e
    report = Imported()
    with fh, configured_pipeline(directory, settings) as pipeline:
        pipeline.on_written = report.sessions.append
        try:
            for flow in io.FlowReader(fh).stream():
                _feed(pipeline, flow, report)
        except exceptions.FlowReadException as e:
            if report.items == 0:
                raise FlowFileError(f"{path}: not a mitmproxy flow file ({e})") from e
            report.damaged = f"{path}: truncated or damaged after flow {report.items}: {e}"
        if report.items == 0:
            raise FlowFileError(f"{path}: not a mitmproxy flow file (no flows in it)")
        _finished(pipeline, directory, report)
    return report


def _feed(pipeline: Pipeline, flow: Any, report: Imported) -> None:
    report.items += 1
    if not isinstance(flow, http.HTTPFlow):
        pipeline.skip(NON_HTTP)
        report.skipped.append((flow.type, f"not HTTP ({flow.type})"))
        return
    if flow.websocket is None and flow.response is not None:
        reason = pipeline.feed(captured(flow))  # counted by the pipeline if skipped
    else:
        reason = WEBSOCKET if flow.websocket is not None else failure_reason(flow, pipeline.filter)
        if reason is not None:
            pipeline.skip(reason)
    if reason is None:
        return
    if flow.error is not None and flow.response is None:
        reason = f"{reason}: {flow.error.msg}"
    report.skipped.append((flow.request.pretty_url, reason))


def import_har(path: Path, directory: Path, settings: Settings, per: Grouping) -> Imported:
    """A HAR file into ``directory``: one session per page (or per file), the recorder's filter and redaction."""
    har = HarFile(path, with_pages=per == "page")
    report = Imported()
    firsts: dict[str, tuple[float, str]] = {}
    """Per group: the start of its first entry (in file order) and the first User-Agent sent."""

    def head(closed: Closed, t0: float) -> Session:
        group = closed.client[0]
        started, agent = firsts[group]
        title = (har.pages.get(group) if group else None) or path.stem
        return Session(id=group_id(har.digest, group, started), name=title, client=ClientInfo(user_agent=agent or None),
                       started_at=datetime.fromtimestamp(t0, tz=UTC), requests=[])

    # No cyclic garbage is made per entry, while a long session holds a million small objects that each
    # full collection would walk again: a fifth of the import's time.
    gc.disable()
    with contextlib.ExitStack() as stack:
        stack.callback(gc.enable)
        pipeline = stack.enter_context(configured_pipeline(directory, settings))
        pipeline.head, pipeline.on_written = head, report.sessions.append
        pipeline.sessionizer.idle_gap, pipeline.sessionizer.max_session = math.inf, None  # HAR pages group
        pipeline.journal_batch = JOURNAL_BATCH
        # Closed on the way out whatever happens: a HAR parsed in a child process stops it.
        entries = stack.enter_context(contextlib.closing(har.entries(lambda entry: _har_item(entry, per))))
        try:
            for group, item, url in entries:
                reason = item if isinstance(item, str) else pipeline.feed(item, Keyed(("page", group)))
                if reason is not None:
                    report.skipped.append((url, reason))
                    continue
                assert not isinstance(item, str)
                started, agent = firsts.setdefault(group, (item.started, item.client[1]))
                if not agent and item.client[1]:
                    firsts[group] = (started, item.client[1])
        except BaseException:
            pipeline.discard()
            raise
        report.items = har.count
        _finished(pipeline, directory, report)
    return report


def _har_item(entry: Any, per: Grouping) -> tuple[str, Captured | str, str]:
    """An entry's group, what it sent and got (or why it is skipped) and its URL: all the import needs of it.

    Made where the entry is parsed (a child process for a big HAR), so that the entry's objects never cross.
    """
    group = page_key(entry, per)
    return group, entry_captured(entry, (group, "")), entry_url(entry)


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
