"""Replay throughput by session length (issue 11): `replay run` against a hand-written locustfile
for sessions of 1, 5 and 20 requests, counted by the target.

    .venv/bin/python benchmarks/replay_by_session_length.py [--lengths 1,5,20] [--pairs 3] [--users 32]
        [--seconds 15] [--json OUT]

For each session length L the script writes a recording of one session of L GETs
(`/a/1` ... `/a/L`, browser-like headers, a recorded `200 ok` each) with the format models,
and a plain locustfile: one `FastHttpUser`, `wait_time = constant(0)`, one task sending the
same L requests in order with the same headers and stats names (taken from the prepared
session, i.e. what ours sends), headers a module constant, no cookie clearing.

- ours: `replay run DIR --host URL --speed 0 -u N -r N -t Ts --headless --no-check`
- plain: `python -m locust -f plain_L.py --headless --host URL -u N -r N -t Ts`

The target is nginx (Debian package, installed with apt-get when missing) on 127.0.0.1,
1 worker, `return 200 "ok\\n"` on every path, with an access log of one line per request
(`$msec $uri`, buffered, flushed every second). **Requests are counted in that log**, not in
Locust's stats: each run's lines are the bytes appended to it during the run (read once
nginx has flushed), and req/s = lines / (last - first `$msec` of the run). A mid-run rate over
the middle of that window (from 25 % to 85 % of it) leaves start-up, ramp-up and shut-down
out. nginx's stub_status counter (its own port, not logged) is read around each run as a
cross-check of the log. Locust's own "Aggregated" row of the final stats table is parsed
from each run's output: for ours it shows whether the SESSION rows (one per session
replayed) are still counted as requests. (Since issue 11 ours prints a progress line instead
of Locust's tables; its summary's Aggregated row is read then.)

Runs go in ABBA order per length (ours, plain in odd pairs; plain, ours in even ones), the
lengths interleaved within each pair, so that a drifting machine favours neither side nor
any length; the figure is the median of the per-pair ratios per length. Each timed run holds
an exclusive `fcntl.flock` on /tmp/bench.lock (blocking), so that benchmark runs of others
that take the same lock do not overlap with it; the load average and the CPU the rest of the
machine took during each run are reported as a noise gauge, and before each run the script
waits (up to `--quiet-wait` s, 60 by default) for a second in which the machine was nearly
idle, so that the bursts of others' test suites (which take no lock) fall less often into a run.

Not a test: it takes minutes and its figures depend on the machine. Exit code 1 when a run
exited non-zero, failed requests, or the log's count disagrees with stub_status.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from harness import (
    OK_LOCATION,
    ensure_nginx,
    free_port,
    log,
    machine_cpu,
    nginx_requests,
    start_nginx,
    stop,
    stub_status_server,
    tree_cpu_seconds,
)
from replay_sides import replay_command, run_tree

LOCK = Path("/tmp/bench.lock")
STARTUP_S = 1.0  # from the start of a side's process to its users running (imports, reading the recording)
MID_SAMPLES = 2
FLUSH_S = 1  # the access log's flush interval
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
HEADERS = [
    ("User-Agent", UA),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
]
# Rows of Locust's request stats table: "GET  /a/{id}  1234  0(0.00%) | ...", "  Aggregated  1234  0(0.00%) | ...".
ROW = re.compile(r"^(\S+)\s+.*?\s(\d+)\s+\d+\(")
AGGREGATED = re.compile(r"^\s+Aggregated\s+(\d+)\s+(\d+)\(")
# Our summary's row: "│        │ Aggregated │    25345 │        0 │ ...".
SUMMARY_AGGREGATED = re.compile(r"^\W+Aggregated\W+(\d+)\W+(\d+)\W")


# --- the target --------------------------------------------------------------------------

def start_counting_nginx(binary: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """nginx answering `200 ok` everywhere and logging each request: (process, port, status port, log)."""
    access_log = tmp / "access.log"
    status_port = free_port()
    locations = f"        access_log {access_log} counted buffer=64k flush={FLUSH_S}s;\n" + OK_LOCATION
    proc, port = start_nginx(binary, tmp, locations, extra_servers=stub_status_server(status_port),
                             http_directives="    log_format counted '$msec $uri';\n    keepalive_timeout 120s;\n")
    return proc, port, status_port, access_log


def read_log(access_log: Path, offset: int) -> tuple[list[tuple[float, str]], int]:
    """The (time, path) lines appended since ``offset``, and the new offset."""
    with access_log.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a half-flushed last line waits for the next read
    lines = []
    for line in data[:end].splitlines():
        t, _, path = line.partition(b" ")
        lines.append((float(t), path.decode()))
    return lines, offset + end


def target_figures(lines: list[tuple[float, str]]) -> dict:
    if len(lines) < 2:
        return {"requests": len(lines), "window_s": 0.0, "rps": 0.0, "mid_rps": 0.0, "paths": {}}
    times = sorted(t for t, _ in lines)
    first, last = times[0], times[-1]
    span = last - first
    lo, hi = first + 0.25 * span, first + 0.85 * span
    mid = sum(1 for t in times if lo <= t < hi)
    return {"requests": len(lines), "window_s": span, "rps": len(lines) / span if span else 0.0,
            "mid_rps": mid / (hi - lo) if hi > lo else 0.0, "paths": dict(Counter(p for _, p in lines))}


# --- the two sides -----------------------------------------------------------------------

def write_recording(directory: Path, length: int, host: str, port: int) -> None:
    """One session of ``length`` GETs, /a/1 ... /a/length, as a recorder writes it."""
    from traffic_replay.format import Body, Request, Response, Session, write_session

    requests = [
        Request(offset_ms=i * 500.0, duration_ms=2.0, method="GET", scheme="http", host=host, port=port,
                path=f"/a/{i}", headers=[("Host", f"{host}:{port}"), *HEADERS, ("Connection", "keep-alive")],
                body=None,
                response=Response(status=200, reason="OK", duration_ms=1.0,
                                  headers=[("Content-Type", "text/plain"), ("Content-Length", "3")],
                                  body=Body.from_bytes(b"ok\n", "text/plain")))
        for i in range(1, length + 1)
    ]
    write_session(Session(id=f"bench-{length}", name=f"session of {length}", weight=1.0,
                          started_at=datetime(2026, 1, 1, tzinfo=UTC), requests=requests), directory)


PLAIN = '''\
"""The hand-written twin of a {length}-request recording: the same GETs, headers and stats names."""

from locust import FastHttpUser, constant, task

HEADERS = {headers!r}


class PlainUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def session(self) -> None:
        c = self.client
{calls}'''


def write_plain(path: Path, directory: Path) -> list[str]:
    """The plain locustfile sending what our prepared session sends; the stats names."""
    from replayer.prepared import prepare_session
    from traffic_replay.format import load_recordings

    [session] = load_recordings(directory)
    steps = prepare_session(session, speed=0).steps
    headers = [dict(s.headers) for s in steps]
    if any(h != headers[0] for h in headers) or any(s.patch or s.extract or s.body for s in steps):
        raise RuntimeError("the prepared steps differ in headers or carry correlation: not the workload meant")
    calls = "".join(f"        c.get({s.url!r}, headers=HEADERS, name={s.name!r})\n" for s in steps)
    path.write_text(PLAIN.format(length=len(steps), headers=headers[0], calls=calls))
    return [s.name for s in steps]


def ours_args(directory: Path, url: str, users: int, seconds: float, replay: list[str] | None = None) -> list[str]:
    return [*(replay or replay_command()), "run", str(directory), "--host", url, "--speed", "0", "-u", str(users),
            "-r", str(users), "-t", f"{seconds:g}s", "--headless", "--no-check"]


def plain_args(locustfile: Path, url: str, users: int, seconds: float) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
            "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s"]


def aggregated(output: Path) -> dict | None:
    """The "Aggregated" requests and failures a run printed, and the requests of its SESSION rows.

    From the last request stats table Locust printed (at the end for plain; before issue 11
    ours printed Locust's periodic tables, the last at most 2 s before the end, then its own
    summary). Since then ours prints a progress line instead of Locust's tables: the figures
    then come from its summary's Aggregated row ("source": "summary"), which counts requests only.
    """
    table = last = summary = None
    for line in output.read_text(errors="replace").splitlines():
        if line.startswith("Type ") and "# fails" in line:
            table = {"aggregated": None, "failures": None, "session_rows": 0, "source": "locust"}
        elif table is not None and (m := AGGREGATED.match(line)):
            table["aggregated"], table["failures"] = int(m.group(1)), int(m.group(2))
            last, table = table, None
        elif table is not None and (m := ROW.match(line)) and m.group(1) == "SESSION":
            table["session_rows"] += int(m.group(2))
        elif m := SUMMARY_AGGREGATED.match(line):
            summary = {"aggregated": int(m.group(1)), "failures": int(m.group(2)), "session_rows": 0,
                       "source": "summary"}
    return last or summary


@contextmanager
def bench_lock():
    """Hold /tmp/bench.lock exclusively (blocking) for one timed run; yield the seconds waited."""
    with LOCK.open("a") as f:
        asked = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - asked
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_quiet(limit: float, idle_cores: float = 1.7) -> float:
    """Wait (at most ``limit`` s) until the machine had ``idle_cores`` idle over the last second:
    other users' bursts (test suites) then fall less often into a run. The seconds waited."""
    began = time.monotonic()
    cores = os.cpu_count() or 1
    while time.monotonic() - began < limit:
        busy0, steal0 = machine_cpu()
        time.sleep(1)
        busy1, steal1 = machine_cpu()
        if cores - (busy1 - busy0) - (steal1 - steal0) >= min(idle_cores, cores - 0.3):
            break
    return time.monotonic() - began - 1


# --- main ----------------------------------------------------------------------------------

def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1,5,20", help="session lengths (requests), comma-separated")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (ours, plain) per length")
    parser.add_argument("--users", type=int, default=32, help="Locust users, and spawn rate (users/s)")
    parser.add_argument("--seconds", type=float, default=15, help="run time of each run (at least 5)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="before each run, wait up to this many seconds for the machine to be quiet")
    parser.add_argument("--keep", action="store_true", help="keep the recordings, locustfiles and logs")
    parser.add_argument("--also", action="append", default=[], metavar="REPLAY",
                        help="another `replay` executable (another checkout's venv), run as side 'also1', "
                             "'also2'... in every pair beside ours, for a before/after in one sitting")
    opts = parser.parse_args()
    lengths = [int(n) for n in opts.lengths.split(",")]
    if opts.seconds < 5 or min(lengths) < 1:
        parser.error("--seconds must be at least 5 and every length at least 1")

    signal.signal(signal.SIGTERM, _interrupted)  # clean up as on Ctrl-C
    try:
        nginx_bin = ensure_nginx()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"error: cannot install nginx: {e}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="replay-by-length-"))
    nginx = None
    runs: list[dict] = []
    problems: list[str] = []
    try:
        nginx, port, status_port, access_log = start_counting_nginx(nginx_bin, tmp)
        url = f"http://127.0.0.1:{port}"
        sides: dict[int, tuple[Path, Path]] = {}
        for length in lengths:
            directory = tmp / f"rec-{length}"
            directory.mkdir()
            write_recording(directory, length, "127.0.0.1", port)
            plain = tmp / f"plain_{length}.py"
            names = write_plain(plain, directory)
            sides[length] = directory, plain
            log(f"L={length}: {directory}, {plain} (stats names {sorted(set(names))})")
        log(f"nginx (pid {nginx.pid}) on {url}; {opts.pairs} pairs of {opts.seconds:g}s runs per length, "
            f"{opts.users} users, spawn rate {opts.users}/s; lock {LOCK}")
        offset = 0
        for pair in range(1, opts.pairs + 1):
            for length in lengths:
                directory, plain = sides[length]
                mine = ["ours", *(f"also{n}" for n in range(1, len(opts.also) + 1))]
                for side in [*mine, "plain"] if pair % 2 else ["plain", *reversed(mine)]:
                    tag = f"L{length}-{side}-{pair}"
                    output = tmp / f"{tag}.log"
                    args = (ours_args(directory, url, opts.users, opts.seconds) if side == "ours"
                            else plain_args(plain, url, opts.users, opts.seconds) if side == "plain"
                            else ours_args(directory, url, opts.users, opts.seconds,
                                           [opts.also[int(side[4:]) - 1]]))
                    with bench_lock() as waited:
                        if waited > 0.5:
                            log(f"  waited {waited:.0f}s for {LOCK}")
                        quiet = wait_quiet(opts.quiet_wait)
                        if quiet > 0.5:
                            log(f"  waited {quiet:.0f}s for a quiet machine")
                        load_before = os.getloadavg()
                        served_before = nginx_requests(status_port)
                        server_before, (busy_before, steal_before) = tree_cpu_seconds(nginx.pid), machine_cpu()
                        # The process tree's CPU and nginx's count sampled at 30% and 80% of the run: CPU per
                        # request over the same middle window, the efficiency that machine noise moves least.
                        code, wall, cpu, mid = run_tree(
                            args, tmp, output, timeout=opts.seconds + 120,
                            sample=(STARTUP_S + 0.3 * opts.seconds, STARTUP_S + 0.8 * opts.seconds),
                            count=lambda: nginx_requests(status_port))
                        time.sleep(FLUSH_S + 1)  # nginx writes its buffered log lines
                        # Less our own reads: the first, and the two mid-run samples.
                        served = nginx_requests(status_port) - served_before - 1 - MID_SAMPLES
                        server_cpu = tree_cpu_seconds(nginx.pid) - server_before
                        busy, steal = machine_cpu()
                        load_after = os.getloadavg()
                    if nginx.poll() is not None:
                        raise RuntimeError(f"nginx died (exit code {nginx.returncode}); see {tmp}/nginx-error.log")
                    lines, offset = read_log(access_log, offset)
                    target = target_figures(lines)
                    locust = aggregated(output)
                    others = max(busy - busy_before - cpu - server_cpu, 0.0) + (steal - steal_before)
                    if code != 0:
                        problems.append(f"{tag}: exit code {code} (log: {output})")
                    if locust is None:
                        problems.append(f"{tag}: no Aggregated row in {output}")
                    elif locust["failures"]:
                        problems.append(f"{tag}: {locust['failures']} failures (log: {output})")
                    if served != target["requests"]:
                        problems.append(f"{tag}: the access log has {target['requests']} requests, "
                                        f"stub_status {served}")
                    expected = {f"/a/{i}" for i in range(1, length + 1)}
                    if set(target["paths"]) != expected:
                        problems.append(f"{tag}: paths {sorted(target['paths'])} are not /a/1../a/{length}")
                    run = {"length": length, "side": side, "pair": pair, "exit_code": code, "wall_s": wall,
                           "cpu_s": cpu, "server_cpu_s": server_cpu,
                           "mid_cpu_us_per_request": mid and mid["cpu_ms_per_1k"], "others_cpu_s": others,
                           "load_before": load_before, "load_after": load_after, "lock_wait_s": waited,
                           "locust_aggregated": locust and locust["aggregated"],
                           "locust_session_rows": locust and locust["session_rows"],
                           "aggregated_from": locust and locust["source"], **target}
                    runs.append(run)
                    log(f"  {tag:14} target {target['requests']:>7} req in {target['window_s']:5.2f}s "
                        f"{target['rps']:7.1f} req/s (mid {target['mid_rps']:7.1f})  Locust Aggregated "
                        f"{run['locust_aggregated']} (SESSION {run['locust_session_rows']})  cpu {cpu:5.2f}s  "
                        f"others {others:5.2f}s  load {load_before[0]:.2f}")
    except KeyboardInterrupt:
        log(f"interrupted; files kept in {tmp}")
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        log(f"error: {e}; files kept in {tmp}")
        return 2
    finally:
        stop(nginx, signal.SIGQUIT)  # graceful: the master stops its worker

    report(runs, lengths, opts)
    for p in problems:
        log(f"PROBLEM: {p}")
    if problems or opts.keep:
        log(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if problems else 0


def report(runs: list[dict], lengths: list[int], opts: argparse.Namespace) -> None:
    print(f"\n{'run':<15}{'target req':>11}{'window s':>10}{'req/s':>9}{'mid req/s':>11}{'Locust Aggr.':>14}"
          f"{'SESSION':>9}{'CPU s':>8}{'nginx CPU s':>13}{'others CPU s':>14}{'load':>6}")
    for r in runs:
        tag = f"L{r['length']}-{r['side']}-{r['pair']}"
        print(f"{tag:<15}{r['requests']:>11}{r['window_s']:>10.2f}"
              f"{r['rps']:>9.1f}{r['mid_rps']:>11.1f}{r['locust_aggregated'] or '-':>14}"
              f"{r['locust_session_rows'] or 0:>9}{r['cpu_s']:>8.2f}{r['server_cpu_s']:>13.2f}"
              f"{r['others_cpu_s']:>14.2f}{r['load_before'][0]:>6.2f}")
    ratios: list[dict] = []
    medians: dict[str, dict] = {}
    print(f"\n{'side':>6} {'L':>3} {'pair':>4} {'side req/s':>11} {'plain req/s':>12} {'ratio':>7} {'mid ratio':>10}"
          f" {'CPU ratio':>10} {'Locust Aggr./requests':>22}")
    sides = sorted({r["side"] for r in runs} - {"plain"}, key=lambda side: (side != "ours", side))
    for side in sides:
        for length in lengths:
            mine = []
            for p in sorted({r["pair"] for r in runs if r["length"] == length}):
                ours = next((r for r in runs if (r["length"], r["pair"], r["side"]) == (length, p, side)), None)
                plain = next((r for r in runs if (r["length"], r["pair"], r["side"]) == (length, p, "plain")), None)
                if not (ours and plain and plain["rps"] and plain["mid_rps"]):
                    continue
                cpu_ours, cpu_plain = ours.get("mid_cpu_us_per_request"), plain.get("mid_cpu_us_per_request")
                row = {"side": side, "length": length, "pair": p, "ours_rps": ours["rps"], "plain_rps": plain["rps"],
                       "ratio": ours["rps"] / plain["rps"], "mid_ratio": ours["mid_rps"] / plain["mid_rps"],
                       # plain's CPU per request over ours': above 1.0, ours spends less per request.
                       "cpu_ratio": cpu_plain / cpu_ours if cpu_ours and cpu_plain else None,
                       # How much Locust's Aggregated row overstates ours' requests (2.0 at L=1 with SESSION rows).
                       "ours_aggregated_over_requests": (
                           ours["locust_aggregated"] / (ours["locust_aggregated"] - ours["locust_session_rows"])
                           if ours["locust_aggregated"] else None)}
                mine.append(row)
                aggr = row["ours_aggregated_over_requests"]
                cpu_ratio = row["cpu_ratio"]
                print(f"{side:>6} {length:>3} {p:>4} {row['ours_rps']:>11.1f} {row['plain_rps']:>12.1f}"
                      f" {row['ratio']:>7.3f} {row['mid_ratio']:>10.3f}"
                      f" {'-' if cpu_ratio is None else format(cpu_ratio, '.3f'):>10}"
                      f" {'-' if aggr is None else format(aggr, '.3f'):>22}")
            if mine:
                cpus = [r["cpu_ratio"] for r in mine if r["cpu_ratio"] is not None]
                key = str(length) if side == "ours" else f"{side}:{length}"
                medians[key] = {"ratio": statistics.median(r["ratio"] for r in mine),
                                "mid_ratio": statistics.median(r["mid_ratio"] for r in mine),
                                "cpu_ratio": statistics.median(cpus) if cpus else None}
                cpu_median = medians[key]["cpu_ratio"]
                shown = "-" if cpu_median is None else format(cpu_median, ".3f")
                print(f"{side:>6} {length:>3} {'med':>4} {'':>11} {'':>12} {medians[key]['ratio']:>7.3f}"
                      f" {medians[key]['mid_ratio']:>10.3f} {shown:>10}")
            ratios += mine
    print("\nratio = side/plain requests/s (ours: this checkout; alsoN: the Nth --also), both counted in"
          " nginx's access log (target >= 1.0); CPU ratio = plain's"
          " CPU per request over ours', both over the middle of each run (above 1.0: ours costs less)")
    if opts.json:
        import locust  # only its version; this process never runs Locust

        opts.json.write_text(json.dumps({
            "command": " ".join([sys.executable, *sys.argv]), "lengths": lengths, "users": opts.users,
            "seconds": opts.seconds, "pairs": opts.pairs, "locust": locust.__version__, "nproc": os.cpu_count(),
            "also": opts.also, "runs": runs, "ratios": ratios, "medians": medians}, indent=2) + "\n")
        log(f"raw figures written to {opts.json}")


if __name__ == "__main__":
    sys.exit(main())
