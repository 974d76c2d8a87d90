"""The recorder: a mitmproxy addon that writes what clients send as session files.

Run it with ``replay record DIR`` or directly: ``mitmdump -s recorder/addon.py --set
replay_dir=DIR``. Each finished flow becomes an exchange of its client's session;
a session is written (atomically) once its client has been idle for
``replay_idle_gap`` seconds, and every open session is written on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.utils import asyncio_utils

from recorder.sessionizer import ClientKey, Exchange, Sessionizer
from traffic_replay.format import Body, Header, Response, Session, write_session

logger = logging.getLogger(__name__)


def _headers(headers: http.Headers) -> list[Header]:
    # fields keeps duplicates and order, which .items() would fold.
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers.fields]


def flow_exchange(flow: http.HTTPFlow, body_cap: int) -> Exchange:
    """The exchange recorded for a finished flow (it must have a response)."""
    req, resp = flow.request, flow.response
    assert resp is not None
    raw = req.raw_content
    # Response bodies are kept decoded (gzip removed) because correlation reads them.
    content = resp.get_content(strict=False) or b""
    request_end = req.timestamp_end or req.timestamp_start
    finished = resp.timestamp_end or resp.timestamp_start
    return Exchange(
        started=req.timestamp_start,
        request_end=request_end,
        finished=finished,
        method=req.method.upper(),
        scheme=req.scheme,
        host=req.host,
        port=req.port,
        path=req.path,
        http_version=req.http_version,
        headers=_headers(req.headers),
        body=Body.from_bytes(raw, req.headers.get("content-type")) if raw else None,
        response=Response(
            status=resp.status_code,
            reason=resp.reason,
            headers=_headers(resp.headers),
            duration_ms=round(max(finished - request_end, 0.0) * 1000, 3),
            body=Body.from_bytes(content, resp.headers.get("content-type"), cap=body_cap) if content else None,
        ),
    )


def parse_seconds(text: str) -> float:
    """A positive number of seconds (mitmproxy options cannot be floats, so they come as text)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"'{text}' must be more than 0 seconds")
    return value


class Recorder:
    """Records every HTTP flow into per-client sessions under ``replay_dir``."""

    def __init__(self) -> None:
        self.directory = Path("recordings")
        self.sessionizer = Sessionizer(30.0, self._write)
        self.written = 0
        self.flows = 0
        self.skipped = 0
        self._closer: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option("replay_dir", str, "recordings",
                          "Directory the session files are written to; created if missing.")
        loader.add_option("replay_idle_gap", str, "30",
                          "Seconds of silence from a client after which its session is closed and written.")
        loader.add_option("replay_body_cap", int, 256 * 1024,
                          "Bytes of each response body kept in the recording (request bodies are kept whole).")

    def configure(self, updated: set[str]) -> None:
        if "replay_dir" in updated:
            directory = Path(ctx.options.replay_dir).expanduser()
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise exceptions.OptionsError(f"{directory}: cannot create directory: {e.strerror}") from e
            if not os.access(directory, os.W_OK | os.X_OK):
                raise exceptions.OptionsError(f"{directory}: directory is not writable")
            self.directory = directory
        if "replay_idle_gap" in updated:
            try:
                self.sessionizer.idle_gap = parse_seconds(ctx.options.replay_idle_gap)
            except ValueError as e:
                raise exceptions.OptionsError(f"replay_idle_gap: {e}") from e
        if "replay_body_cap" in updated and ctx.options.replay_body_cap < 0:
            raise exceptions.OptionsError("replay_body_cap must be zero or more bytes")

    def running(self) -> None:
        self._closer = asyncio_utils.create_task(self._close_idle_sessions(), name="replay: close idle sessions")
        print(f"replay: recording sessions into {self.directory}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)

    async def done(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            try:
                await self._closer
            except asyncio.CancelledError:
                pass
        self.sessionizer.close_all()
        print(f"replay: {self.flows} requests recorded in {self.written} sessions into {self.directory}/"
              f" ({self.skipped} skipped)", file=sys.stderr, flush=True)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None or flow.response is None:
            self.skipped += 1
            return
        self.flows += 1
        self.sessionizer.add(self._client_key(flow), flow_exchange(flow, ctx.options.replay_body_cap))

    def error(self, flow: http.HTTPFlow) -> None:
        self.skipped += 1

    @staticmethod
    def _client_key(flow: http.HTTPFlow) -> ClientKey:
        return (flow.client_conn.peername[0], flow.request.headers.get("user-agent", ""))

    async def _close_idle_sessions(self) -> None:
        while True:
            await asyncio.sleep(min(self.sessionizer.idle_gap / 4, 1.0))
            self.sessionizer.close_idle(time.time())

    def _write(self, session: Session) -> None:
        try:
            write_session(session, self.directory)
        except OSError as e:
            # Losing a session silently would betray the user: say it loudly and keep running.
            logger.error(f"replay: could not write session {session.id} to {self.directory}: {e}")
            return
        self.written += 1


addons = [Recorder()]
