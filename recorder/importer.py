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
Every entry or flow is accounted for: imported, or skipped with its reason (an invalid HAR
entry by its number, from 1, and the field at fault). An import that keeps nothing is an
error; the output directory, its redaction key and the crash journal are made only when a
first request is about to be kept (``Output``), and taken back if no session is written.
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
from typing import Any, BinaryIO

from mitmproxy import exceptions, hooks, http, io, master, options

from recorder.addon import Recorder, recorder_options
from recorder.exchange import NON_HTTP, WEBSOCKET, captured, failure_reason
from recorder.har import Grouping, HarFile, entry_url, group_id, open_regular, page_key
from recorder.harentry import INVALID, Invalid, entry_captured
from recorder.journal import JOURNAL_DIR
from recorder.keys import ID_FILE, key_path
from recorder.pipeline import Captured, Pipeline
from recorder.sessionizer import Closed
from recorder.sessionkeys import Keyed
from traffic_replay.errors import (
    DamagedInput,
    FlowFileError,
    NothingImported,
    RecordingError,
    RedactionKeyError,
    ReplayError,
    one_line,
    report_error,
)
from traffic_replay.format import ClientInfo, Session
from traffic_replay.settings import Settings

JOURNAL_BATCH = 1 << 20
"""A HAR import's journal bytes per ``write()``: a crash loses nothing the HAR itself does not still hold."""


SHOWN = 5
INVALID_FLOW = "not a valid flow"
"""Invalid entries named in full, in the summary and in the error of an import that keeps nothing; the rest counted."""


@dataclass
class Imported:
    """What an import did: items read, requests imported, sessions written, items skipped and why."""

    items: int = 0
    imported: int = 0
    sessions: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(URL or flow type, reason) of every item not imported (``entry N`` for an invalid HAR entry)."""
    damaged: str | None = None
    invalid: list[str] = field(default_factory=list)
    """The first ``SHOWN`` invalid HAR entries, each as ``entry N: what is wrong`` (N from 1)."""
    invalid_count: int = 0

    def add_invalid(self, item: str, what: str, reason: str = INVALID) -> None:
        """``item`` (``entry 17``, ``flow 3``) skipped as invalid (``reason``): ``what`` is wrong with it."""
        self.invalid_count += 1
        if len(self.invalid) < SHOWN:
            self.invalid.append(f"{item}: {what}")
        self.skipped.append((item, reason))


class Output:
    """The recordings directory of an import, made only once a first request is about to be kept.

    Until then nothing exists in it that the import made: not the directory, not the redaction
    key, not the crash journal. ``prepare`` configures the recorder's ``replay_dir`` (the addon
    makes the directory and loads its key as for ``replay record``); an import that ends with no
    session written takes back what it made (``tidy``).
    """

    def __init__(self, directory: Path, opts: options.Options, pipeline: Pipeline) -> None:
        self.directory, self._opts, self.pipeline = directory, opts, pipeline
        self.ready = False
        self._made: list[Path] = []
        """The directories ``prepare`` made, the deepest first (``-o a/b/c`` may make all three)."""
        self._made_id = False

    def feed(self, item: Captured, keyed: Keyed | None = None) -> str | None:
        """``Pipeline.feed``, the directory prepared first if the filters keep ``item``."""
        pipeline = self.pipeline
        if not self.ready and not (pipeline.filter.active and pipeline.filter.skip_reason(
                item.host, item.port, item.url, item.path, item.response_type) is not None):
            self.prepare()
        return pipeline.feed(item, keyed)

    def prepare(self) -> None:
        directory = self.directory
        missing = directory
        while not missing.exists() and not missing.is_symlink() and missing != missing.parent:
            self._made.append(missing)
            missing = missing.parent
        self._made_id = not (directory / ID_FILE).exists()
        try:
            self._opts.update(replay_dir=str(directory))
        except exceptions.OptionsError as e:
            raise RecordingError(str(e)) from e
        self.ready = True

    def write_failed(self, session_id: str, error: OSError) -> None:
        """A session file that cannot be written ends the import, one line; the sessions written before it stay."""
        raise RecordingError(f"{self.directory}: cannot write session {session_id}: {error.strerror or error}; "
                             f"the import stopped after {self.pipeline.written} sessions")

    def tidy(self) -> None:
        """Take back what ``prepare`` made, if no session was written (the journal removes itself)."""
        if not self.ready or self.pipeline.written:
            return
        directory = self.directory
        with contextlib.suppress(OSError):
            (directory / JOURNAL_DIR).rmdir()
        if self._made_id and (directory / ID_FILE).exists():
            # The id and the key it names were made for this import alone: both go.
            with contextlib.suppress(OSError, RedactionKeyError):  # an id we did not make
                key_path(directory).unlink()
            with contextlib.suppress(OSError):
                (directory / ID_FILE).unlink()
        for made in self._made:
            try:
                made.rmdir()  # only if empty: never what someone else put there meanwhile
            except OSError:
                break


@contextmanager
def configured_pipeline(directory: Path, settings: Settings) -> Iterator[Output]:
    """The recorder's ``Pipeline``, its options set as ``replay record`` would set them, writing into ``directory``.

    Configured through the addon itself (options, filters, the directory's redaction key),
    so that an import and a live recording can never parse a setting differently; the
    directory only once the first request is kept (``Output``).
    """
    loop = asyncio.new_event_loop()
    try:
        opts = options.Options()
        proxy = master.Master(opts, event_loop=loop)
        recorder = Recorder()
        proxy.addons.add(recorder)
        try:
            values = recorder_options(opts, _into(settings, directory))
            values.pop("replay_dir", None)  # Output.prepare sets it: it makes the directory and its key
            opts.update(**values)
            # Every option, defaults included, as at mitmproxy's start.
            proxy.addons.invoke_addon_sync(recorder, hooks.ConfigureHook(set(opts.keys()) - {"replay_dir"}))
        except exceptions.OptionsError as e:
            raise RecordingError(str(e)) from e
        output = Output(directory, opts, recorder.pipeline)
        recorder.pipeline.on_write_error = output.write_failed
        try:
            yield output
        finally:
            output.tidy()
    finally:
        loop.close()


def _into(settings: Settings, directory: Path) -> Settings:
    # The one copy of the settings an import makes (the settings class is pydantic's).
    return settings.model_copy(update={"recordings": directory})


def _finished(pipeline: Pipeline, directory: Path, report: Imported) -> None:
    try:
        pipeline.finish()
    except RecordingError:  # a session that cannot be written (Output.write_failed): the input still holds it all
        pipeline.discard()
        raise
    if pipeline.journal_failed:
        raise RecordingError(f"{directory}: the crash journal could not be written; the import is incomplete")
    report.imported = pipeline.flows


def import_flows(path: Path, directory: Path, settings: Settings) -> Imported:
    """Every flow of a ``mitmdump -w`` file through the recorder's pipeline into ``directory``."""
    fh = open_regular(path, FlowFileError)
    report = Imported()
    with fh, configured_pipeline(directory, settings) as output:
        output.pipeline.on_written = report.sessions.append
        output.pipeline.check = True  # a damaged file's flow can hold what no session may
        try:
            for flow in _flows(fh, path, report):
                _feed(output, flow, report)
        except BaseException:
            output.pipeline.discard()  # the flow file still holds it all: no journal left for a recovery
            raise
        if report.items == 0:
            raise FlowFileError(f"{path}: not a mitmproxy flow file (no flows in it)")
        _finished(output.pipeline, directory, report)
    return report


def _flows(fh: BinaryIO, path: Path, report: Imported) -> Iterator[Any]:
    """The flows of the file, until it ends or is damaged (``report.damaged`` then says where)."""
    stream = iter(io.FlowReader(fh).stream())
    while True:
        try:
            flow = next(stream)
        except StopIteration:
            return
        except exceptions.FlowReadException as e:
            problem = str(e)
        except (ValueError, LookupError, TypeError, AttributeError, AssertionError):
            # mitmproxy's reader trusts what a tnetstring says it holds (and asserts that a flow's state has no
            # field it does not know): a file that only looks like one.
            # What broke inside it ("'bytes' object has no attribute 'get'") would tell the user nothing.
            problem = "what it holds is not a flow"
        else:
            yield flow
            continue
        if report.items == 0:
            raise FlowFileError(f"{path}: not a mitmproxy flow file ({problem})")
        report.damaged = f"{path}: truncated or damaged after flow {report.items}: {problem}"
        return


def _feed(output: Output, flow: Any, report: Imported) -> None:
    pipeline = output.pipeline
    report.items += 1
    if not isinstance(flow, http.HTTPFlow):
        pipeline.skip(NON_HTTP)
        report.skipped.append((flow.type, f"not HTTP ({flow.type})"))
        return
    if flow.websocket is None and flow.response is not None:
        try:
            reason = output.feed(captured(flow))  # counted by the pipeline if skipped
        except ValueError as e:  # what a damaged file can hold and a session cannot (the pipeline checks)
            report.add_invalid(f"flow {report.items}", str(e), INVALID_FLOW)
            return
    else:
        reason = WEBSOCKET if flow.websocket is not None else failure_reason(flow, pipeline.filter)
        if reason is not None:
            pipeline.skip(reason)
    if reason is None:
        return
    if flow.error is not None and flow.response is None:
        reason = f"{reason}: {flow.error.msg}"
    report.skipped.append((one_line(flow.request.pretty_url[:200]), reason))


def import_har(path: Path, directory: Path, settings: Settings, per: Grouping, har: HarFile | None = None) -> Imported:
    """A HAR file into ``directory``: one session per page (or per file), the recorder's filter and redaction.

    ``har``: the file as read (its ``version`` is known once the entries are); made here if not given.
    """
    har = har or HarFile(path)
    har.with_pages = per == "page"
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
        output = stack.enter_context(configured_pipeline(directory, settings))
        pipeline = output.pipeline
        pipeline.head, pipeline.on_written = head, report.sessions.append
        pipeline.sessionizer.idle_gap, pipeline.sessionizer.max_session = math.inf, None  # HAR pages group
        pipeline.journal_batch = JOURNAL_BATCH
        # Closed on the way out whatever happens: a HAR parsed in a child process stops it.
        entries = stack.enter_context(contextlib.closing(har.entries(lambda entry: _har_item(entry, per))))
        try:
            for group, item, url in entries:
                if isinstance(item, Invalid):
                    report.add_invalid(f"entry {har.count}", item.what)  # the count so far: this entry's number
                    continue
                reason = item if isinstance(item, str) else output.feed(item, Keyed(("page", group)))
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


def _har_item(entry: Any, per: Grouping) -> tuple[str, Captured | str | Invalid, str]:
    """An entry's group, what it sent and got (or why it is skipped) and its URL: all the import needs of it.

    Made where the entry is parsed (a child process for a big HAR), so that the entry's objects never cross.
    """
    group = page_key(entry, per)
    return group, entry_captured(entry, (group, "")), entry_url(entry)


def render(report: Imported, source: Path, directory: Path) -> list[str]:
    """The summary lines: what was imported, each reason for skipping with its count and an example, then
    the first invalid entries, each with what is wrong."""
    lines = [f"replay: imported {report.imported} of {report.items} requests from {source} "
             f"into {len(report.sessions)} sessions in {directory}/"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)}:")
        by_reason = Counter(reason for _, reason in report.skipped)
        for reason, count in by_reason.most_common():
            example = next(url for url, r in report.skipped if r == reason)
            lines.append(f"  {count:>6}  {reason}  (e.g. {example[:100]})")
    lines.extend(f"  {line}" for line in report.invalid)
    if report.invalid_count > len(report.invalid):
        lines.append(f"  and {report.invalid_count - len(report.invalid)} more entries skipped (invalid)")
    return lines


def nothing_imported(report: Imported, source: Path, unit: str, note: str | None = None) -> str:
    """The one line of an import that kept nothing: how many items, why each kind was skipped."""
    if not report.items:
        return f"{source}: no request could be imported (no {unit} in it{'; ' + note if note else ''})"
    parts = [f"{count} {reason}" for reason, count in Counter(
        reason for _, reason in report.skipped if reason not in (INVALID, INVALID_FLOW)).most_common()]
    parts += report.invalid
    if report.invalid_count > len(report.invalid):
        parts.append(f"and {report.invalid_count - len(report.invalid)} more invalid entries")
    if note:
        parts.append(note)
    return f"{source}: no request could be imported ({report.items} {unit}: {'; '.join(parts)})"


def _is_har(path: Path) -> bool:
    # By content, not name: a HAR is JSON, a flow file is tnetstrings (it starts with a digit).
    with open_regular(path, RecordingError) as fh:
        head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
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
        if directory.exists() and not directory.is_dir():
            raise RecordingError(f"{directory}: exists and is not a directory")
        note = None
        if _is_har(source):
            har = HarFile(source)
            report = import_har(source, directory, settings, settings.import_per, har)
            unit, note = "entries", har.version_warning()
        else:
            report, unit = import_flows(source, directory, settings), "flows"
        if report.damaged and not report.imported:
            raise DamagedInput(f"{report.damaged}; nothing was imported")
        if not report.imported:
            raise NothingImported(nothing_imported(report, source, unit, note))
        if note:
            print(f"warning: {source}: {note}", file=sys.stderr)
        for line in render(report, source, directory):
            print(line, file=sys.stderr)
        for path in report.sessions:
            print(path)
        if report.damaged:
            raise DamagedInput(report.damaged)  # after the summary: what came before the damage is imported
    except ReplayError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
