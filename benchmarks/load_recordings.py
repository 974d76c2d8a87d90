"""How long loading (and preparing) a large recording takes, and how much memory it needs.

    .venv/bin/python benchmarks/load_recordings.py [--requests 1000000] [--per-session 50]

Writes a synthetic recording (sessions of browser-like requests with small JSON answers)
into a temporary directory, then, each in a fresh process: validates it with
``load_recordings`` (what ``replay run`` and Locust do), and prepares it for the replay
loop (correlation detection, templates, extractors). Prints seconds and peak RSS of each.
SPEC: 1,000,000 recorded requests load and validate in seconds, memory proportional to the
bodies. Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

STEP = """
import resource, sys, time
from pathlib import Path
started = time.perf_counter()
from traffic_replay.format import load_recordings
sessions = load_recordings(Path(sys.argv[1]))
loaded = time.perf_counter()
if sys.argv[2] == "prepare":
    from replayer.prepared import prepare
    prepare(sessions, 1.0)
done = time.perf_counter()
print(f"{sum(len(s.requests) for s in sessions)} {loaded - started:.2f} {done - loaded:.2f} "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
"""


def request(i: int, session: int) -> dict[str, object]:
    item = 1000 + i
    return {
        "offset_ms": i * 250.0, "duration_ms": 12.5, "method": "GET" if i % 4 else "POST", "scheme": "http",
        "host": "127.0.0.1", "port": 8000, "path": f"/api/items/{item}?page={i % 7}", "http_version": "HTTP/1.1",
        "headers": [["Host", "127.0.0.1:8000"], ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"],
                    ["Accept", "application/json"], ["Accept-Language", "en-GB,en;q=0.9"],
                    ["X-Session", f"s{session:08d}-token-{session * 7919 % 100000:05d}"]],
        "body": ({"encoding": "text", "data": orjson.dumps({"item_id": item, "qty": 2}).decode(),
                  "content_type": "application/json", "size": 26, "truncated": False} if i % 4 == 0 else None),
        "response": {"status": 200, "reason": "OK", "duration_ms": 10.0,
                     "headers": [["Content-Type", "application/json"], ["Content-Length", "64"]],
                     "body": {"encoding": "text", "content_type": "application/json", "size": 64, "truncated": False,
                              "data": orjson.dumps({"item": {"id": item + 1, "name": f"Item {item}"}}).decode()}},
    }


def write_recording(directory: Path, requests: int, per_session: int) -> int:
    """``requests // per_session`` session files of ``per_session`` requests in ``directory``; their bytes."""
    size = 0
    for n in range(requests // per_session):
        data = orjson.dumps({"format_version": 1, "id": f"s{n:08d}", "name": f"session {n}", "weight": 1.0,
                             "client": {"address": "127.0.0.1", "user_agent": "bench"},
                             "started_at": "2026-01-01T00:00:00Z",
                             "requests": [request(i, n) for i in range(per_session)]})
        (directory / f"s{n:08d}.json").write_bytes(data)
        size += len(data)
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--per-session", type=int, default=50)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        size = write_recording(Path(tmp), opts.requests, opts.per_session)
        print(f"{opts.requests // opts.per_session} session files, {opts.requests} requests, "
              f"{size / 2**20:.0f} MiB of JSON")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        for step in ("load", "prepare"):
            out = subprocess.run([sys.executable, "-c", STEP, tmp, step], capture_output=True, text=True, env=env,
                                 check=True).stdout.split()
            print(f"{step:8} {out[0]} requests: load and validate {out[1]} s, prepare {out[2]} s, "
                  f"peak RSS {out[3]} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
