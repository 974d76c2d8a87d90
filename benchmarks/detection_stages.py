"""The correlation analysis of a recording on its own, as ``replay inspect`` runs it per session.

    .venv/bin/python benchmarks/detection_stages.py DIR [--traced]

Loads DIR (``load_recordings``), then in this one process, with the collector off: seconds of
``analyse``, ``unsourced_values`` and ``session_secrets`` over every session, and the process's
max RSS. With ``--traced``: instead, the analysis's peak of Python allocations (tracemalloc),
what its results and the detector's caches hold, and what is left once ``forget_recording``
lets the caches go. Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--traced", action="store_true")
    opts = parser.parse_args()
    from traffic_replay.correlation import analyse, forget_recording, unsourced_values
    from traffic_replay.correlation.secrets import session_secrets
    from traffic_replay.format import load_recordings, uncollected

    started = time.perf_counter()
    sessions = load_recordings(opts.directory)
    loaded = time.perf_counter() - started
    print(f"load {loaded:.2f} s, max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB,"
          f" {len(sessions)} sessions")
    with uncollected():
        if opts.traced:
            tracemalloc.start()
            results = [analyse(s) for s in sessions]
            held, peak = tracemalloc.get_traced_memory()
            del results
            caches, _ = tracemalloc.get_traced_memory()
            forget_recording()
            left, _ = tracemalloc.get_traced_memory()
            print(f"analysis peak {peak / 2**20:.0f} MiB; held with its results {held / 2**20:.0f}, by the caches"
                  f" alone {caches / 2**20:.0f}, after forget_recording {left / 2**20:.0f}")
            return 0
        took = {"analyse": 0.0, "unsourced_values": 0.0, "session_secrets": 0.0}
        for session in sessions:
            at = time.perf_counter()
            analysis = analyse(session)
            took["analyse"] += time.perf_counter() - at
            at = time.perf_counter()
            unsourced_values(session, analysis.correlations)
            took["unsourced_values"] += time.perf_counter() - at
            at = time.perf_counter()
            session_secrets(session, analysis.correlations)
            took["session_secrets"] += time.perf_counter() - at
    print(", ".join(f"{name} {seconds:.2f} s" for name, seconds in took.items())
          + f"; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
