"""The live counters addon: in place on a terminal, plain lines otherwise, nothing when off."""

from __future__ import annotations

import asyncio
import io

import pytest
from mitmproxy.test import taddons

from recorder.progress import Counts, Progress, describe, human_bytes

pytestmark = pytest.mark.timeout(20)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: Progress, counts: list[Counts], live: bool = True) -> None:
    async def scenario() -> None:
        with taddons.context(progress) as tctx:
            tctx.configure(progress, replay_live=live)
            progress.running()
            await asyncio.sleep(0.6)
            counts.append(Counts(3, 1, 0, 2048, 1))
            await asyncio.sleep(0.6)
            await progress.done()

    asyncio.run(scenario())


def test_describe() -> None:
    assert describe(Counts(12, 1, 3, 1536, 2)) == "12 requests, 1 session open, 3 written, 1.5 KiB, 2 skipped"
    assert [human_bytes(n) for n in (0, 1023, 1024 * 1024 * 5, 3 * 1024**4)] == ["0 B", "1023 B", "5.0 MiB",
                                                                                   "3072.0 GiB"]


def test_a_terminal_gets_one_line_updated_in_place() -> None:
    counts = [Counts(0, 0, 0, 0, 0)]
    stream = _Terminal()
    _run(Progress(lambda: counts[-1], stream=stream), counts)
    text = stream.getvalue()
    assert "0 requests, 0 sessions open" in text and "3 requests, 1 session open, 0 written, 2.0 KiB" in text
    # Redrawn over itself (cursor movements and line erasures), never scrolled: no line ends in between.
    assert "\x1b[2K" in text and text.count("\n") <= 1


def test_a_pipe_gets_a_plain_line_only_when_something_changed() -> None:
    counts = [Counts(0, 0, 0, 0, 0)]
    stream = io.StringIO()
    _run(Progress(lambda: counts[-1], stream=stream, interval=0.1), counts)
    assert stream.getvalue().splitlines() == ["replay: 3 requests, 1 session open, 0 written, 2.0 KiB, 1 skipped"]


def test_off_means_silent() -> None:
    counts = [Counts(0, 0, 0, 0, 0)]
    stream = _Terminal()
    _run(Progress(lambda: counts[-1], stream=stream, interval=0.1), counts, live=False)
    assert stream.getvalue() == ""
