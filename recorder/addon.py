"""The recorder: a mitmproxy addon that writes what clients send as session files.

Run it with ``replay record DIR`` or directly: ``mitmdump -s recorder/addon.py --set
replay_dir=DIR``. Each finished flow that passes the filters (``recorder.filters``)
is redacted (``recorder.redaction``) and becomes an exchange of a session, keyed by
``replay_session_key`` (``recorder.sessionkeys``); a session is written (atomically)
once its key has been idle for ``replay_idle_gap`` seconds or has lasted
``replay_max_session``, and every open session is written on shutdown. What is not
recorded is counted by reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.utils import asyncio_utils

from recorder.exchange import flow_exchange
from recorder.filters import HOST_NOT_ALLOWED, FlowFilter, compile_patterns, parse_host
from recorder.journal import Journal, JournalError, Spilled, describe, recover
from recorder.progress import Counts, Progress
from recorder.redaction import Redactor, load_key
from recorder.sessionizer import ClientKey, Exchange, Sessionizer, build_session
from recorder.sessionkeys import Keyed, KeySpec, key_for, parse_session_key
from traffic_replay.format import Session, write_session
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


# Reasons a flow is not recorded, besides the filters' own.
WEBSOCKET = "websocket"
FAILED = "failed"
NON_HTTP = "non-http"


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
_REDACTION_OPTIONS = {"replay_dir", "replay_redact", "replay_redact_header", "replay_redact_field"}


class Recorder:
    """Records every HTTP flow into sessions under ``replay_dir``."""

    def __init__(self) -> None:
        self.directory = Path("recordings")
        self.sessionizer = Sessionizer(30.0, self._write)
        self.sessionizer.build = self._build
        self.written = 0
        self.flows = 0
        self.bytes = 0
        self.skipped = 0
        self.skips: Counter[str] = Counter()
        """Flows not recorded, by reason."""
        self.body_cap = 256 * 1024
        self.key_spec = KeySpec("client")
        self.filter = FlowFilter()
        # Safe before a directory is configured too: a throwaway key until the directory's own.
        self.redactor: Redactor | None = Redactor(secrets.token_bytes(32))
        self._directory_set = False
        self._closer: asyncio.Task[None] | None = None
        self.journal: Journal | None = None
        self.journal_failed = False
        self._start_failed = False
        self._running = False
        self._rollback = False
        self.fsync_interval = 1.0

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
                          "form bodies and query strings. Each becomes a stable placeholder «redacted:xxxxxxxx».")
        loader.add_option("replay_redact_header", Sequence[str], [],
                          "Further header names whose values are redacted (repeatable).")
        loader.add_option("replay_redact_field", Sequence[str], [],
                          "Further JSON field, form field and query parameter names to redact (repeatable).")

    def configure(self, updated: set[str]) -> None:
        rollback, self._rollback = self._rollback, False
        if "replay_journal_fsync" in updated:
            # Before replay_dir: the journal opened there takes this interval.
            try:
                self.fsync_interval = parse_seconds(ctx.options.replay_journal_fsync, zero=True)
            except ValueError as e:
                raise exceptions.OptionsError(f"replay_journal_fsync: {e}") from e
            if self.journal is not None:
                self.journal.fsync_interval = self.fsync_interval
        if "replay_dir" in updated and rollback:
            self.directory = Path(ctx.options.replay_dir).expanduser()
        elif "replay_dir" in updated:
            directory = Path(ctx.options.replay_dir).expanduser()
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise exceptions.OptionsError(f"{directory}: cannot create directory: {e.strerror}") from e
            if not os.access(directory, os.W_OK | os.X_OK):
                raise exceptions.OptionsError(f"{directory}: directory is not writable")
            self.directory = directory
            self._directory_set = True
            self._close_journal()  # the next flow opens one in the new directory
        if "replay_idle_gap" in updated:
            try:
                self.sessionizer.idle_gap = parse_seconds(ctx.options.replay_idle_gap)
            except ValueError as e:
                raise exceptions.OptionsError(f"replay_idle_gap: {e}") from e
        if "replay_body_cap" in updated:
            if ctx.options.replay_body_cap < 0:
                raise exceptions.OptionsError("replay_body_cap must be zero or more bytes")
            self.body_cap = ctx.options.replay_body_cap
        if "replay_session_key" in updated:
            self.key_spec = _parsed("replay_session_key", parse_session_key)
        if "replay_max_session" in updated:
            self.sessionizer.max_session = _parsed("replay_max_session",
                                                   lambda text: parse_seconds(text) if text.strip() else None)
        if updated & _FILTER_OPTIONS:
            _parsed("replay_allow_host", lambda hosts: [parse_host(h) for h in hosts])
            _parsed("replay_exclude", compile_patterns)
            self.filter = FlowFilter(ctx.options.replay_allow_host, ctx.options.replay_exclude,
                                     ctx.options.replay_static)
        if updated & _REDACTION_OPTIONS and self._directory_set and not rollback:
            self._set_redactor()

    def _rolling_back(self, exc: Exception) -> None:
        self._rollback = True

    def _set_redactor(self) -> None:
        if not ctx.options.replay_redact:
            self.redactor = None
            return
        try:
            key = load_key(self.directory)
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"{self.directory}: cannot read or create the redaction key: {e}") from e
        self.redactor = Redactor(key, ctx.options.replay_redact_header, ctx.options.replay_redact_field)

    def running(self) -> None:
        if self._running:  # mitmproxy can run a reloaded script's hook twice
            return
        self._running = True
        try:
            self.open_journal()
        except JournalError as e:
            # Not in configure(): mitmproxy reports a script's error there with a traceback.
            print(f"error: {e}", file=sys.stderr, flush=True)
            self._start_failed = True
            raise SystemExit(1) from None
        self._start_closer()
        print(f"replay: recording sessions into {self.directory}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if self.redactor is None:
            print("replay: WARNING: redaction is off (--no-redact): passwords, tokens, API keys and cookies are "
                  f"written to {self.directory}/ as sent", file=sys.stderr, flush=True)

    def _start_closer(self) -> None:
        # Also from the first flow: a script that mitmdump loads late may never see running().
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # hooks called directly, as in unit tests: nothing to schedule on
            return
        self._closer = asyncio_utils.create_task(self._close_idle_sessions(), name="replay: close idle sessions")

    async def done(self) -> None:
        if self._start_failed:
            return
        if self._closer is not None:
            self._closer.cancel()
            try:
                await self._closer
            except asyncio.CancelledError:
                pass
        self.finish()
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skips.most_common())
        print(f"replay: {self.flows} requests recorded in {self.written} sessions into {self.directory}/"
              f" ({self.skipped} skipped{': ' + reasons if reasons else ''})", file=sys.stderr, flush=True)
        if self.journal_failed:
            # Like mitmproxy's save addon: a recording that could not be kept safe must not look fine.
            raise SystemExit(1)

    def finish(self) -> None:
        """Write every open session and close the journal (deleted once everything is written)."""
        self.sessionizer.close_all()
        self._close_journal()

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if flow.websocket is not None or resp is None:
            self._skip(WEBSOCKET if flow.websocket is not None else FAILED)
            return
        req = flow.request
        if self.filter.active:
            reason = self.filter.skip_reason(req.host, req.port, req.url, req.path, resp.headers.get("content-type"))
            if reason is not None:
                self._skip(reason)
                return
        if self._closer is None:
            self._start_closer()
        exchange = flow_exchange(flow, self.body_cap, self.redactor)
        self.flows += 1
        self.bytes += (exchange.body.size if exchange.body else 0) + (
            exchange.response.body.size if exchange.response.body else 0)
        client = self._client_key(flow)
        keyed = self._session_key(flow, client)
        # The sessionizer holds only the timing; the exchange itself is in the journal until written.
        spilled = Spilled(exchange)
        session_id = self.sessionizer.add(keyed.key, cast(Exchange, spilled), client, keyed.adopt)
        self._journal(session_id, client, exchange, spilled)

    def error(self, flow: http.HTTPFlow) -> None:
        # A WebSocket was counted at its handshake; a flow that got its whole response was recorded.
        if flow.websocket is not None or (flow.response is not None and flow.response.timestamp_end is not None):
            return
        # A failure on a host we would not have recorded anyway is no failure of the recording.
        allowed = not self.filter.allow_hosts or self.filter.host_allowed(flow.request.host, flow.request.port)
        self._skip(FAILED if allowed else HOST_NOT_ALLOWED)

    # Not HTTP: nothing a session can hold, but counted, so that the summary says it was seen.
    def tcp_start(self, flow: object) -> None:
        self._skip(NON_HTTP)

    def udp_start(self, flow: object) -> None:
        self._skip(NON_HTTP)

    def dns_request(self, flow: object) -> None:
        self._skip(NON_HTTP)

    def counts(self) -> Counts:
        return Counts(self.flows, self.sessionizer.open_count, self.written, self.bytes, self.skipped)

    def _skip(self, reason: str) -> None:
        self.skipped += 1
        self.skips[reason] += 1

    @staticmethod
    def _client_key(flow: http.HTTPFlow) -> ClientKey:
        return (flow.client_conn.peername[0], flow.request.headers.get("user-agent", ""))

    def _session_key(self, flow: http.HTTPFlow, client: ClientKey) -> Keyed:
        spec = self.key_spec
        if spec.kind == "client":
            return Keyed(client)
        assert flow.response is not None
        if spec.kind == "header":
            return key_for(spec, client, flow.request.headers.get_all(spec.name))
        return key_for(spec, client, flow.request.headers.get_all("cookie"),
                       flow.response.headers.get_all("set-cookie"))

    async def _close_idle_sessions(self) -> None:
        while True:
            await asyncio.sleep(min(self.sessionizer.idle_gap / 4, self.fsync_interval or 1.0, 1.0))
            self.sessionizer.close_idle(time.time())
            if self.journal is not None and self.journal.sync_due():
                self._journal_op(self.journal.sync)

    def open_journal(self) -> None:
        """Recover what an earlier recorder left in the directory, then journal into it ourselves."""
        self._close_journal()
        report = recover(self.directory)
        self.journal = Journal(self.directory, self.fsync_interval)
        if report.exchanges:
            print(describe(report, self.directory), file=sys.stderr, flush=True)
        self.sessionizer.on_merge = self._merged

    def _journal(self, session_id: str, client: ClientKey, exchange: Exchange, spilled: Spilled) -> None:
        if self.journal is None and not self.journal_failed:
            self._journal_op(self.open_journal)  # hooks called without running() (tests, imports)
        if self.journal is not None and (where := self._journal_op(self.journal.append, session_id, client,
                                                                   exchange)) is not None:
            spilled.spilled(self.journal, where)

    def _build(self, client: ClientKey, exchanges: list[Exchange], session_id: str) -> Session:
        restored = [x.restore() if isinstance(x, Spilled) else x for x in cast(list[Exchange | Spilled], exchanges)]
        return build_session(client, restored, session_id)

    def _merged(self, absorbed: str, into: str) -> None:
        if self.journal is not None:
            self._journal_op(self.journal.merged, absorbed, into)

    def _journal_op(self, op: Callable[..., T], *args: object) -> T | None:
        if self.journal_failed:
            return None
        try:
            return op(*args)
        except JournalError as e:
            # mitmproxy's save addon would rather stop than let traffic through unrecorded: so do we.
            self.journal_failed = True
            logger.error(f"replay: {e}; stopping the proxy so that no traffic goes through unrecorded")
            ctx.master.shutdown()
            return None

    def _close_journal(self) -> None:
        if self.journal is not None:
            self._journal_op(self.journal.close)
            self.journal = None

    def _write(self, session: Session) -> None:
        try:
            write_session(session, self.directory)
        except OSError as e:
            # Losing a session silently would betray the user: say it loudly and keep running.
            logger.error(f"replay: could not write session {session.id} to {self.directory}: {e}"
                         " (it stays in the crash journal: `replay recover` writes it later)")
            return
        if self.journal is not None:
            self._journal_op(self.journal.written, session.id)
        self.written += 1


_recorder = Recorder()  # (not "recorder": that is the package's name)
# Progress first: its done() erases the live line before the recorder prints its summary.
addons = [Progress(_recorder.counts), _recorder]
