"""The recorder: a mitmproxy addon that writes what clients send as session files.

Run it with ``replay record DIR`` or directly: ``mitmdump -s recorder/addon.py --set
replay_dir=DIR``. A thin adapter over ``recorder.pipeline``: options are declared in
``load`` and parsed in ``configure`` into the pipeline's filter, redactor, session key
and sessionizer; each finished flow becomes plain data (``recorder.exchange``) fed to
the pipeline, which filters, keys, redacts, journals and writes it (a session is
written, atomically, once its key has been idle for ``replay_idle_gap`` seconds or has
lasted ``replay_max_session``); ``running`` opens the crash journal and starts the task
that closes idle sessions, ``done`` writes every open session. What is not recorded is
counted by reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks
from mitmproxy.utils import asyncio_utils

from recorder.exchange import FAILED, NON_HTTP, WEBSOCKET, captured, failure_reason
from recorder.filters import FlowFilter, compile_patterns, parse_host
from recorder.journal import describe
from recorder.pipeline import Pipeline
from recorder.progress import Progress
from recorder.redaction import Redactor, load_key
from recorder.sessionkeys import parse_session_key
from traffic_replay.errors import JournalError, RecordingError, RecordingStopped, RedactionKeyError, report_error
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


def parse_seconds(text: str, zero: bool = False) -> float:
    """A positive (or, with ``zero``, non-negative) number of seconds (mitmproxy options cannot be floats)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a number of seconds") from None
    if zero and not value >= 0:
        raise ValueError(f"'{text}' must be 0 seconds or more")
    if not zero and not value > 0:
        raise ValueError(f"'{text}' must be more than 0 seconds")
    return value


def _parsed(option: str, parse: Callable[[Any], T]) -> T:
    """``parse`` of an option's value; its ``ValueError`` becomes mitmproxy's ``OptionsError``."""
    try:
        return parse(getattr(ctx.options, option))
    except ValueError as e:
        raise exceptions.OptionsError(f"{option}: {e}") from e


def recorder_options(opts: Any, settings: Settings) -> dict[str, Any]:
    """The addon's ``replay_*`` options from the settings of the same name (``replay_dir`` from ``recordings``).

    The one mapping from settings to options: ``replay record`` (``python -m recorder``) and
    ``replay import`` both configure the addon through it; under plain ``mitmdump`` the
    options come from ``--set`` instead.
    """
    values: dict[str, Any] = {}
    dumped = settings.model_dump(mode="json")
    dumped["dir"] = dumped["recordings"]
    for name, option in opts.items():
        setting = name.removeprefix("replay_")
        if setting == name or dumped.get(setting) is None:
            continue
        value, kind = dumped[setting], option.typespec
        values[name] = str(value) if kind is str else int(value) if kind is int else value
    return values


_FILTER_OPTIONS = {"replay_allow_host", "replay_exclude", "replay_static"}
_REDACTION_OPTIONS = {"replay_dir", "replay_redact", "replay_redact_header", "replay_redact_field",
                      "replay_redaction_key_file"}


class Recorder:
    """Records every HTTP flow into sessions under ``replay_dir``: a thin adapter over ``Pipeline``."""

    def __init__(self) -> None:
        self.pipeline = Pipeline()
        """Everything that is recorded goes through it; ``replay import`` feeds a configured one too."""
        self.pipeline.on_journal_error = self._journal_failed
        # Safe before a directory is configured too: a throwaway key until the directory's own.
        self.pipeline.redactor = Redactor(secrets.token_bytes(32))
        self._directory_set = False
        self._closer: asyncio.Task[None] | None = None
        self._start_failed = False
        self._running = False
        self._rollback = False
        self._noted: set[str] = set()
        self.upstream_failures = 0
        """Connections to an upstream server that failed (refused, unreachable)."""
        self._unreachable: set[str] = set()  # addresses already warned about
        self.exit_code = 0
        """Non-zero once the recording could not be kept safe (``done`` sets it)."""
        self.defer_exit = False
        """Leave the exit to the caller (``python -m recorder``) instead of raising ``SystemExit`` in ``done``:
        raised there, it unwinds mitmproxy's event loop under its open connections, which print tracebacks."""

    def load(self, loader: Loader) -> None:
        # After a failed update mitmproxy configures the previous values again; those were
        # in use (or the untouched defaults), so nothing must be created for them.
        loader.master.options.errored.connect(self._rolling_back)
        loader.add_option("replay_dir", str, "recordings",
                          "Directory the session files are written to; created if missing.")
        loader.add_option("replay_idle_gap", str, "30",
                          "Seconds of silence from a client after which its session is closed and written.")
        loader.add_option("replay_body_cap", int, 256 * 1024,
                          "Bytes of each response body kept in the recording (request bodies are kept whole).")
        loader.add_option("replay_journal_fsync", str, "1",
                          "Seconds between fsyncs of the crash journal (DIR/.journal); 0 syncs every flow. "
                          "Each flow reaches the kernel as it finishes either way, so a killed recorder "
                          "loses nothing it had finished; this bounds what a power loss can take.")
        loader.add_option("replay_session_key", str, "client",
                          "What makes a session: 'client' (address and User-Agent), 'cookie:NAME' (a cookie's "
                          "value; a client's requests before the cookie was set join the session it was set for) "
                          "or 'header:NAME' (a request header's value). Requests without it fall back to 'client'.")
        loader.add_option("replay_max_session", str, "",
                          "Seconds a session may last before it is split; empty for no limit.")
        loader.add_option("replay_allow_host", Sequence[str], [],
                          "Record only these hosts (repeatable): 'example.com', 'example.com:8443', "
                          "'*.example.com'. Default: every host.")
        loader.add_option("replay_exclude", Sequence[str], [],
                          "Do not record requests whose URL matches this regular expression (repeatable).")
        loader.add_option("replay_static", bool, True,
                          "Record static assets (images, fonts, CSS, JavaScript, media: by extension or "
                          "Content-Type); false drops them.")
        loader.add_option("replay_redact", bool, True,
                          "Redact secrets before anything is written: Authorization, Proxy-Authorization, cookie "
                          "values, X-Api-Key, X-Auth-Token, and password/token/secret/API key fields of JSON and "
                          "form and multipart bodies and query strings; anywhere, JWTs, well-known API keys and "
                          "passwords in URLs. Each becomes a stable placeholder «redacted:xxxxxxxx».")
        loader.add_option("replay_redact_header", Sequence[str], [],
                          "Further header names whose values are redacted (repeatable).")
        loader.add_option("replay_redact_field", Sequence[str], [],
                          "Further JSON field, form field and query parameter names to redact (repeatable).")
        loader.add_option("replay_redaction_key_file", str, "",
                          "Redaction key file to use (created if missing) instead of the recordings directory's own "
                          "key in ~/.config/traffic-replay/keys/: the way to share placeholders on purpose.")

    def configure(self, updated: set[str]) -> None:
        rollback, self._rollback = self._rollback, False
        pipeline = self.pipeline
        if "replay_journal_fsync" in updated:
            # Before replay_dir: the journal opened there takes this interval.
            pipeline.fsync_interval = _parsed("replay_journal_fsync", lambda text: parse_seconds(text, zero=True))
            if pipeline.journal is not None:
                pipeline.journal.fsync_interval = pipeline.fsync_interval
        if "replay_dir" in updated and rollback:
            pipeline.directory = Path(ctx.options.replay_dir).expanduser()
        elif "replay_dir" in updated:
            directory = Path(ctx.options.replay_dir).expanduser()
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise exceptions.OptionsError(f"{directory}: cannot create directory: {e.strerror}") from e
            if not os.access(directory, os.W_OK | os.X_OK):
                raise exceptions.OptionsError(f"{directory}: directory is not writable")
            pipeline.directory = directory
            self._directory_set = True
            pipeline.close_journal()  # the next flow opens one in the new directory
        if "replay_idle_gap" in updated:
            pipeline.sessionizer.idle_gap = _parsed("replay_idle_gap", parse_seconds)
        if "replay_body_cap" in updated:
            if ctx.options.replay_body_cap < 0:
                raise exceptions.OptionsError("replay_body_cap must be zero or more bytes")
            pipeline.body_cap = ctx.options.replay_body_cap
        if "replay_session_key" in updated:
            pipeline.key_spec = _parsed("replay_session_key", parse_session_key)
        if "replay_max_session" in updated:
            pipeline.sessionizer.max_session = _parsed("replay_max_session",
                                                       lambda text: parse_seconds(text) if text.strip() else None)
        if updated & _FILTER_OPTIONS:
            _parsed("replay_allow_host", lambda hosts: [parse_host(h) for h in hosts])
            _parsed("replay_exclude", compile_patterns)
            pipeline.filter = FlowFilter(ctx.options.replay_allow_host, ctx.options.replay_exclude,
                                         ctx.options.replay_static)
        if updated & _REDACTION_OPTIONS and self._directory_set and not rollback:
            pipeline.redactor = self._redactor()

    def _rolling_back(self, exc: Exception) -> None:
        self._rollback = True

    def _redactor(self) -> Redactor | None:
        if not ctx.options.replay_redact:
            return None
        key_file = Path(ctx.options.replay_redaction_key_file) if ctx.options.replay_redaction_key_file else None
        try:
            key = load_key(self.pipeline.directory, key_file, self._note)
        except RedactionKeyError as e:
            raise exceptions.OptionsError(str(e)) from e
        return Redactor(key, ctx.options.replay_redact_header, ctx.options.replay_redact_field)

    def _note(self, line: str) -> None:
        if line not in self._noted:  # configure() may load the key more than once
            self._noted.add(line)
            print(line, file=sys.stderr, flush=True)

    def running(self) -> None:
        if self._running:  # mitmproxy can run a reloaded script's hook twice
            return
        self._running = True
        directory = self.pipeline.directory
        try:
            self.open_journal()
        except RecordingError as e:  # the journal, or a session file that what it recovers cannot name
            # Not in configure(): mitmproxy reports a script's error there with a traceback.
            self._start_failed = True
            raise SystemExit(report_error(RecordingStopped(str(e)))) from None
        self._start_closer()
        print(f"replay: recording sessions into {directory}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if self.pipeline.redactor is None:
            print("replay: WARNING: redaction is off (--no-redact): passwords, tokens, API keys and cookies are "
                  f"written to {directory}/ as sent", file=sys.stderr, flush=True)

    def open_journal(self) -> None:
        """Recover what an earlier recorder left in the directory (and say so), then journal into it."""
        report = self.pipeline.open_journal()
        if report.exchanges:
            print(describe(report, self.pipeline.directory), file=sys.stderr, flush=True)

    def _start_closer(self) -> None:
        # Also from the first flow: a script that mitmdump loads late may never see running().
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # hooks called directly, as in unit tests: nothing to schedule on
            return
        self._closer = asyncio_utils.create_task(self._close_idle_sessions(), name="replay: close idle sessions")

    async def _close_idle_sessions(self) -> None:
        pipeline = self.pipeline
        while True:
            await asyncio.sleep(min(pipeline.sessionizer.idle_gap / 4, pipeline.fsync_interval or 1.0, 1.0))
            pipeline.close_idle(time.time())

    async def done(self) -> None:
        if self._start_failed:
            return
        if self._closer is not None:
            self._closer.cancel()
            try:
                await self._closer
            except asyncio.CancelledError:
                pass
        pipeline = self.pipeline
        pipeline.finish()
        reasons = ", ".join(f"{n} {reason}" for reason, n in pipeline.skips.most_common())
        if self.upstream_failures:
            left = f"; {self.upstream_failures} connections to the upstream failed"
        else:
            left = ""
        left += (f"; {pipeline.unwritten} sessions could not be written and stay in {pipeline.directory}/.journal: "
                f"`replay recover {pipeline.directory}` writes them" if pipeline.unwritten else "")
        print(f"replay: {pipeline.flows} requests recorded in {pipeline.written} sessions into {pipeline.directory}/"
              f" ({pipeline.skipped} skipped{': ' + reasons if reasons else ''}){left}", file=sys.stderr, flush=True)
        if pipeline.journal_failed:
            # Like mitmproxy's save addon: a recording that could not be kept safe must not look fine.
            self.exit_code = RecordingStopped.exit_code  # the reason was logged as it failed
            if not self.defer_exit:
                raise SystemExit(self.exit_code)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None or flow.response is None:
            self.pipeline.skip(WEBSOCKET if flow.websocket is not None else FAILED)
            return
        if self._closer is None:
            self._start_closer()
        self.pipeline.feed(captured(flow, with_url=bool(self.pipeline.filter.exclude)))
        if self.pipeline.journal_failed:
            # Not on disk (a full disk, most often): the client must not get an answer that no
            # recovery can bring back. Killed, its connection closes without one.
            flow.kill()

    def error(self, flow: http.HTTPFlow) -> None:
        if (reason := failure_reason(flow, self.pipeline.filter)) is not None:
            self.pipeline.skip(reason)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        # No flow may follow (reverse mode connects as the client does, and closes the client when it
        # cannot): counted here, and said once per address, as it happens, so that a dead upstream is not
        # just a recording that stopped growing.
        self.upstream_failures += 1
        address = data.server.address
        where = f"{address[0]}:{address[1]}" if address else "the upstream"
        if where not in self._unreachable:
            self._unreachable.add(where)
            print(f"replay: WARNING: upstream {where} unreachable ({data.server.error or 'no connection'}): its "
                  "clients get 502 Bad Gateway or a closed connection, and nothing is recorded until it answers",
                  file=sys.stderr, flush=True)

    # Not HTTP: nothing a session can hold, but counted, so that the summary says it was seen.
    def tcp_start(self, flow: object) -> None:
        self.pipeline.skip(NON_HTTP)

    def udp_start(self, flow: object) -> None:
        self.pipeline.skip(NON_HTTP)

    def dns_request(self, flow: object) -> None:
        self.pipeline.skip(NON_HTTP)

    def _journal_failed(self, error: JournalError) -> None:
        # mitmproxy's save addon would rather stop than let traffic through unrecorded: so do we.
        logger.error(f"replay: {error}; stopping the proxy so that no traffic goes through unrecorded")
        ctx.master.shutdown()


_recorder = Recorder()  # (not "recorder": that is the package's name)
# Progress first: its done() erases the live line before the recorder prints its summary.
addons = [Progress(_recorder.pipeline.counts), _recorder]
