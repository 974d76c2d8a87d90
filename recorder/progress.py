"""Live counters while recording: one line on stderr that updates in place.

A mitmproxy addon of its own beside the recorder, reading the recorder's counters
through a callable. When stderr is a terminal the line is drawn with rich and
redrawn four times a second (and erased at the end, where the recorder prints its
summary); when it is not (a log file, CI), a plain line is printed every
``interval`` seconds, and only when something changed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.utils import asyncio_utils
from rich.console import Console
from rich.live import Live
from rich.text import Text

from recorder.pipeline import Counts

REFRESH = 0.25
PLAIN_INTERVAL = 10.0


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def describe(c: Counts) -> str:
    plural = "" if c.open == 1 else "s"
    return (f"{c.flows} requests, {c.open} session{plural} open, {c.written} written, "
            f"{human_bytes(c.bytes)}, {c.skipped} skipped")


class Progress:
    """Shows ``counts()`` while mitmproxy runs (option ``replay_live``)."""

    def __init__(self, counts: Callable[[], Counts], stream: TextIO | None = None,
                 interval: float = PLAIN_INTERVAL) -> None:
        self.counts = counts
        self.stream = stream
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option("replay_live", bool, True,
                          "Show live recording counters on stderr: one line updated in place on a terminal, "
                          "otherwise a plain line at most every 10 seconds when they changed.")

    def running(self) -> None:
        if ctx.options.replay_live:
            self._task = asyncio_utils.create_task(self._show(), name="replay: live counters")

    async def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _show(self) -> None:
        stream = self.stream or sys.stderr
        if stream.isatty():
            await self._live(stream)
        else:
            await self._plain(stream)

    async def _live(self, stream: TextIO) -> None:
        console = Console(file=stream, force_terminal=True)
        # No refresh thread (auto_refresh off): this task redraws, on mitmproxy's event loop.
        live = Live(console=console, auto_refresh=False, transient=True)
        live.start()
        try:
            while True:
                live.update(Text.assemble(("replay ", "bold"), ("recording: ", "dim"), describe(self.counts())),
                            refresh=True)
                await asyncio.sleep(REFRESH)
        finally:
            live.stop()

    async def _plain(self, stream: TextIO) -> None:
        last = self.counts()
        while True:
            await asyncio.sleep(self.interval)
            now = self.counts()
            if now != last:
                print(f"replay: {describe(now)}", file=stream, flush=True)
                last = now
