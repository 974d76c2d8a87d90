"""Where the time and the memory of a large recording go: load, inspect, prepare, profiled.

    .venv/bin/python benchmarks/profile_scale.py [--requests 100000] [--per-session 100] [--top 8]

Writes the synthetic recording of ``load_recordings.py`` (sessions of JSON API calls), then,
each stage in a fresh process: ``load_recordings`` (read and validate), ``inspect_sessions``
(what ``replay inspect`` computes) and ``prepare`` (what the replay does before its first
request). For each stage: seconds, peak RSS, the functions with the most time of their own
(cProfile), and the stage's Python allocations at their peak by file (tracemalloc; a second
run, since tracing slows everything). Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from load_recordings import write_recording

STAGE = r"""
import cProfile, pstats, resource, sys, time, tracemalloc, io
from pathlib import Path
directory, stage, top, traced = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
from traffic_replay.format import load_recordings, uncollected
from traffic_replay.inspection import inspect_sessions
from replayer.prepared import prepare

def run():
    # What a stage returns stays referenced, so that the snapshot shows what it holds.
    sessions = load_recordings(directory)
    if stage == "inspect":
        return sessions, inspect_sessions(sessions)
    if stage == "prepare":
        # With the collector off, as the replay prepares (replayer/loading.py): else its full
        # collections land on whatever allocates, and the profile blames those functions.
        with uncollected(freeze=False):
            return prepare(sessions, 1.0)
    return sessions

if traced:
    tracemalloc.start(1)
    kept = run()
    snapshot = tracemalloc.take_snapshot()
    _, peak = tracemalloc.get_traced_memory()
    print(f"traced peak {peak / 2**20:.0f} MiB; what the stage's result holds, by the file that allocated it:")
    for stat in snapshot.statistics("filename")[:top]:
        where = stat.traceback[0].filename.split("site-packages/")[-1]
        print(f"  {stat.size / 2**20:8.1f} MiB  {stat.count:>9} blocks  {where}")
else:
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.runcall(run)
    took = time.perf_counter() - started
    print(f"{took:.2f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    print("\n".join("  " + line.strip() for line in lines[start:] if line.strip()))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--per-session", type=int, default=100)
    parser.add_argument("--top", type=int, default=8)
    opts = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryDirectory(prefix="profile-scale-") as tmp:
        size = write_recording(Path(tmp), opts.requests, opts.per_session)
        print(f"{opts.requests // opts.per_session} session files, {opts.requests} requests, {size / 2**20:.0f} MiB")
        for stage in ("load", "inspect", "prepare"):
            for traced in ("0", "1"):
                out = subprocess.run([sys.executable, "-c", STAGE, tmp, stage, str(opts.top), traced],
                                     capture_output=True, text=True, env=env, check=True).stdout
                print(f"== {stage} ({'tracemalloc' if traced == '1' else 'cProfile'})\n{out.rstrip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
