"""Where the time before a replay's first request goes, step by step, for one recording.

    .venv/bin/python benchmarks/first_request.py DIR [--requests 100000 --per-session 100000]

With DIR missing or empty it first writes the scale benchmark's recording there (``scale.py``:
one session of 100,000 requests by default). Then, in this one process and in the order a
``replay run`` does them: reading and packing the files (the command's part: decoding and
checking each, the secrets, the recorded latencies, zlib), decoding the first session again
(the replay process's part), its file digest, its analysis detected (the cache filled) and
then remembered, and ``prepare_session`` (what a session needs whole, and its first run of
steps). Seconds per step; process start-up and the payload's trip are not in it. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from scale import write_recording

from replayer.prepared import prepare_session
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.format import file_digest, uncollected
from traffic_replay.hosts import HostMap
from traffic_replay.naming import StatsNamer
from traffic_replay.packing import Look, Unpacker, read_packed

T = TypeVar("T")


def timed(what: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    with uncollected(freeze=False):
        result = work()
    print(f"{what:<46} {time.perf_counter() - started:7.2f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--per-session", type=int, default=100_000)
    args = parser.parse_args()
    directory: Path = args.directory
    if not directory.is_dir() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        write_recording(directory, args.requests, args.per_session)
    packing = timed("read and pack (the command)", lambda: read_packed(directory, Look(timed=StatsNamer()), fork=True))
    session, raw = timed("decode the first session (the replay)", lambda: Unpacker().read(packing.sessions[0]))
    digest = timed("its file digest", lambda: file_digest(raw))
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = AnalysisCache(Path(cache_dir))
        timed("its analysis, detected (and remembered)", lambda: cache.analyse(session, digest))
        analysis = timed("its analysis, remembered", lambda: cache.analyse(session, digest))
    hosts = HostMap("http://127.0.0.1:9", packing.primary or "127.0.0.1:8000", [])
    timed("prepare_session: its first run of steps", lambda: prepare_session(
        session, 1.0, hosts, detected=analysis.correlations, environ={"REPLAY_SECRET_0A1B2C3D": "pw"}))
    print(f"{len(session.requests):,} requests in the first of {len(packing.sessions):,} sessions, "
          f"{len(analysis.correlations):,} correlations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
