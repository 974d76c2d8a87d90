"""Replay with `--processes 2` against one process, and plain Locust's own ratio beside it.

    .venv/bin/python benchmarks/replay_processes.py [--users 40] [--seconds 20] [--pairs 3] [--json OUT]

The workload, recording and target are those of benchmarks/replay_throughput.py (see
benchmarks/replay_workload.py): eight browser-like requests, the id and token of
`POST /api/items` correlated live, no think time, a local nginx (1 worker, access log off,
on 127.0.0.1). Four kinds of runs, same users, spawn rate (= users) and run time, headless:

- ours-p2:  `replay run DIR --speed 0 --no-check --processes 2 --master-bind-port P`
            (a master and two workers that Locust forks on this machine);
- ours-p1:  the same without `--processes` (one process);
- plain-p2: `locust -f benchmarks/plain_locustfile.py --processes 2`, its master bound
            to 127.0.0.1:P (Locust binds every address by default);
- plain-p1: the same plain locustfile in one process.

The figures are the medians of per-pair ratios p2/p1: ours' is what the SPEC asks for
(at least 1.8x), plain's is the reference it cites (what Locust itself reaches here).
Runs go in ABBA order at both levels: ours-p2, ours-p1, plain-p1, plain-p2 in odd pairs,
plain-p2, plain-p1, ours-p1, ours-p2 in even ones, so that a machine that drifts during
the benchmark favours neither p2 nor p1, nor ours nor plain.

- requests/s: total requests / the run's stats window, as each run reports it (our
  `--summary-json`: `total.requests / duration_s`, SESSION rows left out; plain's
  `--json-file`: the sum over endpoints over max(last request) - min(start)). For a
  `--processes` run these are the master's figures, aggregated from its workers.
- CPU per request, whole run: user + system seconds of the run's process tree (master and
  workers: each is waited for by its parent), from RUSAGE_CHILDREN deltas, per 1000 requests.
- Mid-run, between two samples at 2 + 0.3 T and 1 + 0.8 T seconds of a T-second run: the
  requests nginx served (stub_status) per second, and where the machine's two cores went
  over that interval, in cores: the master (for a one-process run: the process itself),
  the workers, nginx, everything else on the machine (others' work and the hypervisor's
  steal), and idle. That says whether the target, the master or the machine limits p2.

Checks: each run exits 0 with zero failures, the eight endpoints in equal shares, nginx
served what the run reports (± users), ours with no unsourced value, divergence or failed
session, a `--processes 2` run of ours reporting two workers that took part and none lost,
and nothing of the run's process group left once it exited. Otherwise exit code 1.

Bounded: every run starts in a session of its own and is stopped, its whole process group
(whose id is its PID), after T + 120 s or on Ctrl-C / SIGTERM; nginx is stopped by its PID;
everything listens on 127.0.0.1 only. Not a test: results and the command go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    cpu_seconds,
    ensure_nginx,
    free_port,
    log,
    machine_cpu,
    nginx_requests,
    stop,
    stop_group,
    tree_cpu_seconds,
)
from replay_sides import check_mix, clean_env, ours_args, plain_args, read_ours, read_plain
from replay_workload import correlation_check, start_shop_nginx, write_recording

KINDS = ("ours-p2", "ours-p1", "plain-p1", "plain-p2")  # the order of an odd pair; even pairs reverse it
PROCESSES = 2


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_args(kind: str, recordings: Path, url: str, users: int, seconds: float, out: Path) -> list[str]:
    side, procs = kind.split("-")
    args = (ours_args(recordings, url, users, seconds, out) if side == "ours"
            else plain_args(url, users, seconds, out))
    if procs == "p1":
        return args
    port = free_port()
    if side == "ours":  # our master binds 127.0.0.1 by default and points its forked workers at it
        return [*args, "--processes", str(PROCESSES), "--master-bind-port", str(port)]
    # Locust's master binds every address by default: keep it on loopback, and tell the workers.
    return [*args, "--processes", str(PROCESSES), "--master-bind-host", "127.0.0.1", "--master-bind-port",
            str(port), "--master-host", "127.0.0.1", "--master-port", str(port)]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _snapshot(pid: int, nginx_pid: int, status_port: int) -> dict:
    busy, steal = machine_cpu()
    return {"t": time.perf_counter(), "tree": tree_cpu_seconds(pid), "master": cpu_seconds(pid),
            "nginx": tree_cpu_seconds(nginx_pid), "served": nginx_requests(status_port), "busy": busy,
            "steal": steal}


def run_measured(args: list[str], cwd: Path, log_path: Path, timeout: float, sample_at: tuple[float, float],
                 nginx_pid: int, status_port: int) -> tuple[int, float, float, dict | None, bool]:
    """Run ``args`` in a session of its own: (exit code, wall s, tree CPU s, mid-run figures, leftovers).

    ``leftovers``: some process of the run's group was still there after it exited (then stopped).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    samples: list[dict] = []
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for at in sample_at:
                try:
                    proc.wait(max(start + at - time.perf_counter(), 0))
                    break  # ended before the sample time
                except subprocess.TimeoutExpired:
                    try:
                        samples.append(_snapshot(proc.pid, nginx_pid, status_port))
                    except FileNotFoundError:  # it exited just now
                        break
            code = proc.wait(max(start + timeout - time.perf_counter(), 0.1))
        except BaseException:  # timeout, Ctrl-C: stop the run (its whole process group) and go
            stop_group(proc)
            raise
    wall = time.perf_counter() - start
    leftovers = _group_alive(proc.pid)
    if leftovers:
        stop_group(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mid = None
    if len(samples) == 2:
        a, b = samples
        dt = b["t"] - a["t"]
        tree, master, nginx = b["tree"] - a["tree"], b["master"] - a["master"], b["nginx"] - a["nginx"]
        requests = b["served"] - a["served"] - 1  # less our own first read
        busy, steal = b["busy"] - a["busy"], b["steal"] - a["steal"]
        cores = os.cpu_count() or 1
        mid = {"s": dt, "requests": requests, "rps": requests / dt,
               "cpu_ms_per_1k": tree * 1e6 / requests if requests > 0 else None,
               # Where the cores went, in cores (CPU seconds per second).
               "load_gen": tree / dt, "master": master / dt, "workers": (tree - master) / dt,
               "nginx": nginx / dt, "others": max(busy - tree - nginx, 0.0) / dt + steal / dt,
               "idle": max(cores * dt - busy - steal, 0.0) / dt}
    return code, wall, cpu, mid, leftovers


def measure(kind: str, pair: int, recordings: Path, url: str, tmp: Path, nginx: subprocess.Popen,
            status_port: int, opts: argparse.Namespace) -> tuple[dict, list[str]]:
    side, procs = kind.split("-")
    tag = f"{kind}-{pair}"
    out = tmp / f"{tag}.json" if side == "ours" else tmp / tag
    args = run_args(kind, recordings, url, opts.users, opts.seconds, out)
    sample_at = (2 + 0.3 * opts.seconds, 1 + 0.8 * opts.seconds)
    served_before = nginx_requests(status_port)
    nginx_before = tree_cpu_seconds(nginx.pid)
    busy_before, steal_before = machine_cpu()
    code, wall, cpu, mid, leftovers = run_measured(args, tmp, tmp / f"{tag}.log", opts.seconds + 120, sample_at,
                                                   nginx.pid, status_port)
    nginx_cpu = tree_cpu_seconds(nginx.pid) - nginx_before
    samples_read = 3 if mid is not None else 1
    served = nginx_requests(status_port) - served_before - samples_read
    busy, steal = machine_cpu()
    if nginx.poll() is not None:
        raise RuntimeError(f"nginx died (exit code {nginx.returncode}); see {tmp}/nginx-error.log")
    log_file = tmp / f"{tag}.log"
    problems = []
    if code != 0:
        problems.append(f"{tag}: exit code {code} (log: {log_file})")
    if leftovers:
        problems.append(f"{tag}: processes of the run were left after it exited (stopped)")
    figures = read_ours(out) if side == "ours" else read_plain(out)
    if figures["failures"]:
        problems.append(f"{tag}: {figures['failures']} failures (log: {log_file})")
    problems += check_mix(tag, figures["mix"])
    problems += [f"{tag}: {p}" for p in figures["problems"]]
    if abs(served - figures["requests"]) > opts.users:
        problems.append(f"{tag}: reports {figures['requests']} requests, nginx served {served}")
    workers = None
    if side == "ours":
        workers = json.loads(out.read_text()).get("workers")
        if procs == "p2" and (not workers or workers["took_part"] != PROCESSES or workers["lost"]):
            problems.append(f"{tag}: workers {workers}, expected {PROCESSES} that took part and none lost")
        if procs == "p1" and workers is not None:
            problems.append(f"{tag}: a one-process run reports workers {workers}")
    if mid is None:
        problems.append(f"{tag}: ended before its mid-run samples")
    rps = figures["requests"] / figures["window_s"]
    run = {"kind": kind, "side": side, "processes": PROCESSES if procs == "p2" else 1, "pair": pair,
           "exit_code": code, "wall_s": wall, "cpu_s": cpu, "nginx_cpu_s": nginx_cpu,
           "others_cpu_s": max(busy - busy_before - cpu - nginx_cpu, 0.0) + (steal - steal_before),
           "requests": figures["requests"], "served": served, "failures": figures["failures"],
           "window_s": figures["window_s"], "rps": rps, "cpu_ms_per_1k": cpu * 1e6 / max(figures["requests"], 1),
           "workers": workers, "mid": mid, "command": args}
    m = mid or {}
    log(f"  {tag:11} {run['requests']:>7} req  {rps:7.1f} req/s  cpu {cpu:6.2f} s  {run['cpu_ms_per_1k']:6.1f} ms/1k"
        f"  mid {_fmt(m.get('rps'), '.1f')} req/s; cores: master {_fmt(m.get('master'), '.2f')}"
        f" workers {_fmt(m.get('workers'), '.2f')} nginx {_fmt(m.get('nginx'), '.2f')}"
        f" others {_fmt(m.get('others'), '.2f')} idle {_fmt(m.get('idle'), '.2f')}")
    return run, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=40, help="Locust users, and spawn rate (users/s)")
    parser.add_argument("--seconds", type=float, default=20, help="run time of each run (at least 10)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of each comparison (p2, p1)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    opts = parser.parse_args()
    if opts.seconds < 10:
        parser.error("--seconds must be at least 10 (a distributed run takes a few seconds to start)")
    if opts.users < PROCESSES:
        parser.error(f"--users must be at least {PROCESSES}")

    signal.signal(signal.SIGTERM, _interrupted)  # clean up as on Ctrl-C
    try:
        nginx_bin = ensure_nginx()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"error: cannot install nginx: {e}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="replay-processes-"))
    nginx = None
    runs: list[dict] = []
    problems: list[str] = []
    try:
        nginx, port, status_port = start_shop_nginx(nginx_bin, tmp)
        url = f"http://127.0.0.1:{port}"
        recordings = tmp / "recordings"
        recordings.mkdir()
        write_recording(recordings, "127.0.0.1", port)
        correlation_check(recordings)
        log(f"nginx (pid {nginx.pid}) on {url}; {opts.pairs} pairs of {opts.seconds:g}s runs of each comparison, "
            f"{opts.users} users, spawn rate {opts.users}/s")
        for pair in range(1, opts.pairs + 1):
            for kind in KINDS if pair % 2 else tuple(reversed(KINDS)):
                run, found = measure(kind, pair, recordings, url, tmp, nginx, status_port, opts)
                runs.append(run)
                problems += found
    except KeyboardInterrupt:
        log(f"interrupted; files kept in {tmp}")
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        log(f"error: {e}; files kept in {tmp}")
        return 2
    finally:
        stop(nginx, signal.SIGQUIT)  # graceful: the master stops its worker

    report(runs, opts)
    for p in problems:
        log(f"PROBLEM: {p}")
    if not problems:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"logs kept in {tmp}")
    return 1 if problems else 0


def machine() -> dict:
    import locust  # only its version; this process never runs Locust

    return {"nproc": os.cpu_count(), "python": sys.version.split()[0], "locust": locust.__version__,
            "platform": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}",
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def report(runs: list[dict], opts: argparse.Namespace) -> None:
    print(f"\n{'run':<12}{'requests':>9}{'window s':>9}{'req/s':>9}{'CPU s':>8}{'ms/1k':>7}{'mid req/s':>10}"
          f"{'mid ms/1k':>10}{'master':>8}{'workers':>8}{'nginx':>7}{'others':>7}{'idle':>6}   (mid-run, cores)")
    for r in runs:
        m = r["mid"] or {}
        print(f"{r['kind'] + '-' + str(r['pair']):<12}{r['requests']:>9}{r['window_s']:>9.2f}{r['rps']:>9.1f}"
              f"{r['cpu_s']:>8.2f}{r['cpu_ms_per_1k']:>7.1f}{_fmt(m.get('rps'), '.1f'):>10}"
              f"{_fmt(m.get('cpu_ms_per_1k'), '.1f'):>10}{_fmt(m.get('master'), '.2f'):>8}"
              f"{_fmt(m.get('workers'), '.2f'):>8}{_fmt(m.get('nginx'), '.2f'):>7}{_fmt(m.get('others'), '.2f'):>7}"
              f"{_fmt(m.get('idle'), '.2f'):>6}")

    def find(kind: str, pair: int) -> dict | None:
        return next((r for r in runs if r["kind"] == kind and r["pair"] == pair), None)

    ratios = []
    for pair in sorted({r["pair"] for r in runs}):
        row: dict = {"pair": pair}
        for side in ("ours", "plain"):
            p2, p1 = find(f"{side}-p2", pair), find(f"{side}-p1", pair)
            if p2 and p1:
                row[f"{side}_rps"] = p2["rps"] / p1["rps"]
                row[f"{side}_mid_rps"] = _ratio((p2["mid"] or {}).get("rps"), (p1["mid"] or {}).get("rps"))
                row[f"{side}_cpu_per_request"] = p2["cpu_ms_per_1k"] / p1["cpu_ms_per_1k"]
        o2, n2 = find("ours-p2", pair), find("plain-p2", pair)
        if o2 and n2:
            row["ours_p2_over_plain_p2"] = o2["rps"] / n2["rps"]
        ratios.append(row)

    def median(key: str) -> float | None:
        values = [r[key] for r in ratios if r.get(key) is not None]
        return statistics.median(values) if values else None

    keys = ("ours_rps", "ours_mid_rps", "ours_cpu_per_request", "plain_rps", "plain_mid_rps",
            "plain_cpu_per_request", "ours_p2_over_plain_p2")
    summary = {f"median_{k}": median(k) for k in keys}
    print(f"\n{'pair':>4}  {'ours req/s':>10}  {'mid':>6}  {'CPU/req':>7}  {'plain req/s':>11}  {'mid':>6}"
          f"  {'CPU/req':>7}   <- p{PROCESSES}/p1;  ours-p2/plain-p2 req/s")
    for r in [*ratios, {"pair": "med", **{k: summary[f"median_{k}"] for k in keys}}]:
        print(f"{r['pair']:>4}  {_fmt(r.get('ours_rps'), '.3f'):>10}  {_fmt(r.get('ours_mid_rps'), '.3f'):>6}"
              f"  {_fmt(r.get('ours_cpu_per_request'), '.3f'):>7}  {_fmt(r.get('plain_rps'), '.3f'):>11}"
              f"  {_fmt(r.get('plain_mid_rps'), '.3f'):>6}  {_fmt(r.get('plain_cpu_per_request'), '.3f'):>7}"
              f"   {_fmt(r.get('ours_p2_over_plain_p2'), '.3f')}")
    print(f"\nmedian ours p{PROCESSES}/p1 req/s:  {_fmt(summary['median_ours_rps'], '.3f')}  (SPEC: >= 1.8)")
    print(f"median plain p{PROCESSES}/p1 req/s: {_fmt(summary['median_plain_rps'], '.3f')}"
          "  (Locust's own, the reference)")
    nginx = [r["mid"]["nginx"] for r in runs if r["mid"]]
    if nginx:
        print(f"nginx mid-run: {min(nginx):.2f}-{max(nginx):.2f} of a core (its one worker saturates at 1.00)")
    if opts.json:
        opts.json.write_text(json.dumps({
            "command": " ".join([sys.executable, *sys.argv]), "machine": machine(),
            "users": opts.users, "seconds": opts.seconds, "pairs": opts.pairs,
            "runs": runs, "ratios": ratios, **summary}, indent=2) + "\n")
        log(f"raw figures written to {opts.json}")


if __name__ == "__main__":
    sys.exit(main())
