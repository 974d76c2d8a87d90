"""Running the two sides of the replay benchmark, and reading what each reports.

Ours is `replay run DIR --speed 0 --no-check`, plain is `locust -f benchmarks/plain_locustfile.py`;
each runs headless in a session of its own, its whole process tree measured (see `run_tree`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import stop_group, tree_cpu_seconds
from replay_workload import WORKLOAD

HERE = Path(__file__).resolve().parent
PLAIN_LOCUSTFILE = HERE / "plain_locustfile.py"


def clean_env() -> dict[str, str]:
    """Our environment without REPLAY_* / LOCUST_* settings that would make the sides differ."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("REPLAY_", "LOCUST_"))}


def replay_command() -> list[str]:
    script = Path(sys.executable).parent / "replay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "traffic_replay.cli"]


def ours_args(recordings: Path, url: str, users: int, seconds: float, out: Path) -> list[str]:
    return [*replay_command(), "run", str(recordings), "--host", url, "-u", str(users), "-r", str(users),
            "-t", f"{seconds:g}s", "--headless", "--speed", "0", "--no-check", "--summary-json", str(out)]


def plain_args(url: str, users: int, seconds: float, out_prefix: Path) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(PLAIN_LOCUSTFILE), "--headless", "--host", url,
            "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s", "--json-file", str(out_prefix)]


def run_tree(args: list[str], cwd: Path, log_path: Path, timeout: float,
             sample: tuple[float, float] | None = None,
             count: Callable[[], int] | None = None) -> tuple[int, float, float, dict | None]:
    """Run ``args`` in a new session.

    Return (exit code, wall s, CPU s of the whole tree, mid-run figures): the tree's CPU
    comes from RUSAGE_CHILDREN deltas (every process of it is waited for by its parent).
    The mid-run figures come from two samples at the ``sample`` times (s after the start),
    each of the tree's CPU (from /proc) and of ``count()`` (requests served so far), which
    leaves out start-up, ramp-up and shut-down: CPU utilisation, requests/s and CPU ms
    per 1000 requests over the same interval.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    samples: list[tuple[float, float, int]] = []
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for at in sample or ():
                try:
                    proc.wait(max(start + at - time.perf_counter(), 0))
                    break  # ended before the sample time
                except subprocess.TimeoutExpired:
                    served = count() if count is not None else 0
                    samples.append((time.perf_counter(), tree_cpu_seconds(proc.pid), served))
            code = proc.wait(max(start + timeout - time.perf_counter(), 0.1))
        except BaseException:  # timeout, Ctrl-C: stop the run (its whole process group) and go
            stop_group(proc)
            raise
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mid = None
    if len(samples) == 2:
        (t0, cpu0, n0), (t1, cpu1, n1) = samples
        requests = n1 - n0 - 1  # less our own first read
        mid = {"s": t1 - t0, "cpu_s": cpu1 - cpu0, "requests": requests, "cpu_util": (cpu1 - cpu0) / (t1 - t0),
               "rps": requests / (t1 - t0) if count is not None else None,
               "cpu_ms_per_1k": (cpu1 - cpu0) * 1e6 / requests if count is not None and requests > 0 else None}
    return code, wall, cpu, mid


def read_ours(path: Path) -> dict:
    data = json.loads(path.read_text())
    mix = {(e["method"], e["name"]): e["requests"] for e in data["endpoints"]}
    # Sessions replayed, and any sign that the correlation did not work: recorded values sent
    # again (unsourced) or responses unlike the recorded ones (divergences).
    problems = [f"unsourced {u}" for u in data["unsourced"]] + [f"divergence {d}" for d in data["divergences"]]
    if data["sessions"]["failed"]:
        problems.append(f"{data['sessions']['failed']} sessions failed")
    return {"requests": data["total"]["requests"], "failures": data["total"]["failures"],
            "window_s": data["duration_s"], "mix": mix, "sessions": data["sessions"]["completed"],
            "problems": problems}


def read_plain(prefix: Path) -> dict:
    entries = json.loads(prefix.with_name(prefix.name + ".json").read_text())
    mix = {(e["method"], e["name"]): e["num_requests"] for e in entries}
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    return {"requests": sum(mix.values()), "failures": sum(e["num_failures"] for e in entries),
            "window_s": last - start, "mix": mix, "sessions": mix.get(("GET", "/orders/{id}"), 0), "problems": []}


def check_mix(side: str, mix: dict[tuple[str, str], int]) -> list[str]:
    expected = {(w[0], w[4]) for w in WORKLOAD}
    problems = []
    if set(mix) != expected:
        problems.append(f"{side}: endpoints {sorted(mix)} differ from the workload's {sorted(expected)}")
    total = sum(mix.values()) or 1
    for key, count in mix.items():
        share = count / total
        if abs(share - 1 / len(WORKLOAD)) > 0.01:
            problems.append(f"{side}: {key[0]} {key[1]} is {share:.1%} of the requests, not ~{1 / len(WORKLOAD):.1%}")
    return problems

