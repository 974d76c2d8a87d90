"""The recording pipeline: filter, session key, redaction, sessions, crash journal, session files.

Pure Python, no mitmproxy: what a recording does with one finished exchange, fed as
plain data (a ``Captured``) by whoever has it: the live addon (``recorder.addon``) from
each mitmproxy flow, ``replay import`` from each flow of a flow file or each HAR entry.

For every ``feed``:

1. the filters (``recorder.filters``) may skip it: the reason is counted and returned;
2. its session key (``recorder.sessionkeys``) is read from what was actually sent, unless
   the caller says which session it belongs to (a HAR page);
3. secrets are redacted (``recorder.redaction``), the response body capped, and it
   becomes an ``Exchange`` of plain values (``recorder.records``);
4. the ``Sessionizer`` puts it into its session, holding only its timing (a ``Spilled``),
   while the exchange itself goes to the crash journal (``recorder.journal``) as one line;
5. when a session closes (idle gap, maximum length, ``finish``), its exchanges are read
   back from the journal one at a time and written as a session file
   (``recorder.writer``), and the journal is told.

Nothing is validated per exchange: the exchanges are made here from plain values, and
the session files they become are the format's own layout. An importer of a file that
may hold anything (a damaged flow file) sets ``check``: each exchange is then validated
against the format (``records.validated``) before it is kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple, TypeVar

from recorder.filters import FlowFilter
from recorder.journal import Journal, Recovered, Spilled, recover
from recorder.records import Exchange, ResponseData, body_data, validated
from recorder.redaction import Redactor
from recorder.sessionizer import ClientKey, Closed, Sessionizer
from recorder.sessionkeys import Keyed, KeySpec, key_for
from recorder.writer import client_head, write_lines
from traffic_replay.errors import JournalError
from traffic_replay.format import Header, Session

__all__ = ["Captured", "Counts", "Pipeline"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Captured(NamedTuple):
    """One finished exchange as it was sent and answered, before filters and redaction."""

    client: ClientKey
    """(address, User-Agent) of the client that sent it."""
    started: float
    request_end: float
    finished: float
    method: str
    scheme: str
    host: str
    port: int
    path: str
    url: str
    """The whole URL (what ``--exclude`` patterns match); may be empty when no filter needs it."""
    http_version: str
    headers: list[Header]
    body: bytes
    """The request body as sent (compressed if it was)."""
    body_type: str | None
    status: int
    reason: str
    response_headers: list[Header]
    response_body: bytes
    """The response body decoded (correlation reads it)."""
    response_type: str | None
    duration_ms: float
    """From the request fully sent to the response complete."""
    decoded_body: bytes | None = None
    """The request body decoded, when it was sent with a Content-Encoding (redaction reads it)."""


class Counts(NamedTuple):
    """What a recording has done so far (``replay record``'s live line)."""

    flows: int
    """Requests recorded."""
    open: int
    """Sessions still open (in memory)."""
    written: int
    """Session files written."""
    bytes: int
    """Body bytes recorded, requests and responses."""
    skipped: int
    """Flows not recorded (filtered, failed, WebSocket, non-HTTP)."""


def _values(headers: list[Header], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


class Pipeline:
    """Records exchanges into session files under ``directory``; configured by its attributes."""

    def __init__(self, directory: Path = Path("recordings")) -> None:
        self.directory = directory
        self.filter = FlowFilter()
        self.redactor: Redactor | None = None
        self.key_spec = KeySpec("client")
        self.body_cap = 256 * 1024
        self.fsync_interval = 1.0
        self.journal_batch = 0
        """Journal bytes per ``write()`` (``Journal.batch``): 0, a write per exchange, for a live recording."""
        self.sessionizer = Sessionizer(30.0, self._write)
        self.sessionizer.on_merge = self._merged
        self.head: Callable[[Closed, float], Session] = lambda closed, t0: client_head(closed.id, closed.client, t0)
        """The session a closed one is written as, before its requests (``t0``: its first request's start)."""
        self.on_written: Callable[[Path], None] | None = None
        self.on_journal_error: Callable[[JournalError], None] | None = None
        self.on_write_error: Callable[[str, OSError], None] | None = None
        """Told of a session file that could not be written (an import stops there); else it is logged."""
        """Called once when the journal fails (after which nothing more is journaled): a live recorder stops."""
        self.journal: Journal | None = None
        self.journal_failed = False
        self.check = False
        """Validate each exchange against the format before it is kept (``feed`` raises ``ValueError``)."""
        self.flows = self.bytes = self.written = self.skipped = 0
        self.unwritten = 0
        """Sessions whose file could not be written (they stay in the journal for ``replay recover``)."""
        self.skips: Counter[str] = Counter()
        """Exchanges not recorded, by reason."""

    # --- per exchange -------------------------------------------------------------------

    def feed(self, item: Captured, keyed: Keyed | None = None) -> str | None:
        """Record ``item`` (into ``keyed``'s session if given); the reason if it is skipped, else ``None``.

        With ``check``, a ``ValueError`` naming the field if the format would refuse it.
        """
        if self.filter.active:
            reason = self.filter.skip_reason(item.host, item.port, item.url, item.path, item.response_type)
            if reason is not None:
                self.skip(reason)
                return reason
        exchange = self.exchange(item)
        if self.check:
            validated(exchange)  # raises before anything holds it
        if keyed is None:
            keyed = self.session_key(item)
        self.flows += 1
        self.bytes += (exchange.body.size if exchange.body else 0) + (
            exchange.response.body.size if exchange.response.body else 0)
        # The sessionizer holds only the timing; the exchange itself is in the journal until written.
        spilled = Spilled(exchange)
        session_id = self.sessionizer.add(keyed.key, spilled, item.client, keyed.adopt)
        if self.journal is None and not self.journal_failed:
            self._journal_op(self.open_journal)  # fed without a start (tests, imports)
        if self.journal is not None and (where := self._journal_op(self.journal.append, session_id, item.client,
                                                                   exchange)) is not None:
            spilled.spilled(self.journal, where)
        return None

    def skip(self, reason: str) -> None:
        """Count an exchange (or anything else seen) that is not recorded."""
        self.skipped += 1
        self.skips[reason] += 1

    def session_key(self, item: Captured) -> Keyed:
        spec = self.key_spec
        if spec.kind == "client":
            return Keyed(item.client)
        if spec.kind == "header":
            return key_for(spec, item.client, _values(item.headers, spec.name.lower()))
        return key_for(spec, item.client, _values(item.headers, "cookie"),
                       _values(item.response_headers, "set-cookie"))

    def exchange(self, item: Captured) -> Exchange:
        """``item`` redacted (if a redactor is set) and capped, as the exchange a session keeps."""
        headers, path, response_headers = item.headers, item.path, item.response_headers
        body, content = item.body, item.response_body
        redactor = self.redactor
        if redactor is not None:
            headers, path = redactor.header_list(headers), redactor.path(path)
            response_headers = redactor.header_list(response_headers)
            content = redactor.body(content, item.response_type)
            if body and item.decoded_body is None:
                body = redactor.body(body, item.body_type)
            elif body and item.decoded_body is not None and (
                    redacted := redactor.body(item.decoded_body, item.body_type)) is not item.decoded_body:
                # A compressed body can only be redacted decoded; kept so, its headers must not say otherwise.
                body, headers = redacted, [h for h in headers if h[0].lower() != "content-encoding"]
        return Exchange(
            item.started, item.request_end, item.finished, item.method, item.scheme, item.host, item.port, path,
            item.http_version, headers, body_data(body, item.body_type) if body else None,
            ResponseData(item.status, item.reason, response_headers, item.duration_ms,
                         body_data(content, item.response_type, self.body_cap) if content else None))

    # --- lifecycle ----------------------------------------------------------------------

    def open_journal(self) -> Recovered:
        """Recover what an earlier recorder left in the directory, then journal into it ourselves."""
        self.close_journal()
        report = recover(self.directory)
        self.journal = Journal(self.directory, self.fsync_interval, self.journal_batch)
        return report

    def close_idle(self, now: float) -> None:
        """Write the sessions idle (or too long) at ``now``; fsync the journal if it is due."""
        self.sessionizer.close_idle(now)
        if self.journal is not None and self.journal.sync_due():
            self._journal_op(self.journal.sync)

    def finish(self) -> None:
        """Write every open session and close the journal (deleted once everything is written)."""
        self.sessionizer.close_all()
        self.close_journal()

    def close_journal(self) -> None:
        if self.journal is not None:
            self._journal_op(self.journal.close)
            self.journal = None

    def discard(self) -> None:
        """Drop every open session and the journal's lines (an import that failed: nothing of it is kept)."""
        self.sessionizer.discard_all()
        if self.journal is not None:
            self.journal.discard()
            self.journal = None

    def counts(self) -> Counts:
        return Counts(self.flows, self.sessionizer.open_count, self.written, self.bytes, self.skipped)

    # --- internals ----------------------------------------------------------------------

    def _write(self, closed: Closed) -> None:
        held: list[Spilled] = sorted(closed.exchanges, key=attrgetter("started"))
        t0 = held[0].started
        try:
            path = write_lines(self.directory, self.head(closed, t0), (x.line(t0) for x in held))
        except JournalError as e:
            self._failed(e)
            return
        except OSError as e:
            if self.on_write_error is not None:
                self.on_write_error(closed.id, e)
                return
            self.unwritten += 1
            # Losing a session silently would betray the user: say it loudly and keep running. Once the
            # journal has failed (a full disk), the recorder is stopping and its summary counts these.
            if not self.journal_failed:
                logger.error(f"replay: could not write session {closed.id} to {self.directory}: {e}"
                             " (it stays in the crash journal: `replay recover` writes it later)")
            return
        if self.journal is not None:
            self._journal_op(self.journal.written, closed.id)
        self.written += 1
        if self.on_written is not None:
            self.on_written(path)

    def _merged(self, absorbed: str, into: str) -> None:
        if self.journal is not None:
            self._journal_op(self.journal.merged, absorbed, into)

    def _journal_op(self, op: Callable[..., T], *args: object) -> T | None:
        if self.journal_failed:
            return None
        try:
            return op(*args)
        except JournalError as e:
            self._failed(e)
            return None

    def _failed(self, error: JournalError) -> None:
        if self.journal_failed:
            return
        self.journal_failed = True
        if self.on_journal_error is not None:
            self.on_journal_error(error)
        else:
            logger.error(f"replay: {error}")
