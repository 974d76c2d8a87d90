"""``python -m recorder ARGS``: mitmdump with the recorder's addons built in (what ``replay record`` runs).

Built in rather than loaded with ``-s``: mitmproxy loads a script in a background task,
and under load (six recorders starting at once) a script's ``running`` hook was sometimes
never called, so no idle session was closed; it also reports a script's option error with
a traceback. A built-in addon gets every hook in order, and an option error is one line
and exit code 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mitmproxy import options
from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run

from recorder import addon
from traffic_replay.settings import SERIALISED_ENV, Settings


class RecorderMaster(DumpMaster):
    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.addons.add(*addon.addons)
        if SERIALISED_ENV in os.environ:  # started by `replay record`: its settings, before any --set
            opts.update(**addon.recorder_options(opts, Settings.of_process()))


def main() -> None:
    sys.argv[0] = "replay record"  # mitmproxy starts its one-line errors with it
    run(RecorderMaster, cmdline.mitmdump, sys.argv[1:])


if __name__ == "__main__":
    main()
