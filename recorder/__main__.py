"""``python -m recorder ARGS``: mitmdump with the recorder's addons built in (what ``replay record`` runs).

Built in rather than loaded with ``-s``: mitmproxy loads a script in a background task,
and under load (six recorders starting at once) a script's ``running`` hook was sometimes
never called, so no idle session was closed; it also reports a script's option error with
a traceback. A built-in addon gets every hook in order, and an option error is one line
and exit code 1.

The process collects its youngest garbage every ``YOUNG_COLLECTION`` allocations rather
than Python's 700: a proxied flow makes a few thousand short-lived objects (mitmproxy's and
the recorder's), and at 700 the collector ran several times per flow, walking whatever was
in flight. Measured in reverse mode under wrk (docs/benchmarks.md, "Recorder throughput"),
the threshold gained as much as switching the collector off (two short pairs: 0.95 of plain
mitmdump against 0.89; five 20 s pairs: a median of 0.90 against 0.88). Nothing is kept
longer: what the young collection frees is the same, only collected later.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from typing import Any

from mitmproxy import options
from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run

from recorder import addon
from traffic_replay.settings import SERIALISED_ENV, Settings


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


class RecorderMaster(DumpMaster):
    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.addons.add(*addon.addons)
        # Outside run() (mitmproxy installs its own handler for that time, then puts this one back): once
        # everything is written, asyncio.run cancels the client connections still open (a browser's
        # keep-alive, a client cut off by a full disk), and Python 3.11's asyncio.streams reports each as an
        # "Exception in callback" traceback (fixed in 3.12): no error of ours, nor the user's.
        self.event_loop.set_exception_handler(_quiet_cancelled)
        addon._recorder.defer_exit = True  # main() exits with its code once mitmproxy has closed its connections
        if SERIALISED_ENV in os.environ:  # started by `replay record`: its settings, before any --set
            opts.update(**addon.recorder_options(opts, Settings.of_process()))


YOUNG_COLLECTION = 10_000


def main() -> None:
    sys.argv[0] = "replay record"  # mitmproxy starts its one-line errors with it
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION, middle, old)
    run(RecorderMaster, cmdline.mitmdump, sys.argv[1:])
    if addon._recorder.exit_code:
        sys.exit(addon._recorder.exit_code)


if __name__ == "__main__":
    main()
