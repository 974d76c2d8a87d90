"""Replay throughput: `replay run` against a minimal hand-written FastHttpUser locustfile.

    .venv/bin/python benchmarks/replay_throughput.py [--users 20] [--seconds 20] [--pairs 3] [--json OUT]

Both sides send the same eight requests (GET pages with ids and query strings, JSON
POSTs, a form POST; same headers, bodies and stats names) with no think time to the
same local nginx (1 worker, access log off, `return 200 "ok\\n"`), with the same users,
spawn rate and run time, one Locust process each, headless: ours is
`replay run DIR --speed 0 --no-check` on a recording generated with the format models,
plain is `locust -f benchmarks/plain_locustfile.py`. Correlation is exercised on both
sides: `POST /api/items` answers JSON with an id and a token, which the next requests
send back (the id in a path and a JSON body, the token in an `X-Token` header); ours
extracts and substitutes them per virtual user (correlation on, the default), plain does
it by hand (`resp.json()["item"]["id"]`). Runs alternate in ABBA order
(ours, plain, plain, ours, ours, plain, ...) so that a machine that drifts during the
benchmark favours neither side; the figures are the medians of the per-pair ratios.

- requests/s: total requests / the run's stats window (Locust's start of the test to
  its last request timestamp), as each side reports it.
- CPU per request, whole run: user + system seconds of the whole process tree of the
  run (for ours: `replay run`, which execs into Locust), from RUSAGE_CHILDREN deltas,
  per 1000 requests; start-up and shut-down included.
- Mid-run: between two samples taken at 2 + 0.3 T and 1 + 0.8 T seconds of a T-second run,
  the tree's CPU seconds (from /proc) and the requests nginx served (its stub_status
  counter, on a port of its own): requests/s and CPU per request over the same interval,
  start-up, ramp-up and shut-down left out. nginx's count is also checked against each
  side's own total, so that no SESSION row is counted as a request.

Before the timed runs, a wire check sends each side to a capturing HTTP server that
hands out another id and token than the recorded ones, and compares the first iteration
that arrived (method, path, headers, body): the two sides must send the same requests,
carrying the values handed out, or the comparison means nothing. A correlation check
then confirms that our replayer compiled the recording with the two live values where
they are sent (as `replay inspect DIR` lists them).

Not a test: it takes minutes and its figures depend on the machine. Results and the
command go in docs/benchmarks.md. Exit code 1 when a run failed a request, exited
non-zero, sent a different request mix or (ours) sent a recorded value or diverged.
Our SESSION rows (one per session replayed) are left out of the totals and the mix:
our summary JSON already leaves them out of `total` and `endpoints`.
"""


from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ensure_nginx, log, machine_cpu, nginx_requests, stop, tree_cpu_seconds
from replay_sides import check_mix, ours_args, plain_args, read_ours, read_plain, run_tree
from replay_wire import wire_check
from replay_workload import correlation_check, start_shop_nginx, write_recording


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="Locust users, and spawn rate (users/s)")
    parser.add_argument("--seconds", type=float, default=20, help="run time of each run (at least 5)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (ours, plain)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--skip-wire-check", action="store_true", help="do not compare the requests sent first")
    opts = parser.parse_args()
    if opts.seconds < 5:
        parser.error("--seconds must be at least 5")
    # Mid-run samples: well after start-up and ramp-up (~1.5 s) and before the end of the run.
    sample_at = (2 + 0.3 * opts.seconds, 1 + 0.8 * opts.seconds)

    signal.signal(signal.SIGTERM, _interrupted)  # clean up as on Ctrl-C
    try:
        nginx_bin = ensure_nginx()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"error: cannot install nginx: {e}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    nginx = None
    runs: list[dict] = []
    problems: list[str] = []
    try:
        if not opts.skip_wire_check:
            wire_check(tmp)
        nginx, port, status_port = start_shop_nginx(nginx_bin, tmp)
        url = f"http://127.0.0.1:{port}"
        recordings = tmp / "recordings"
        recordings.mkdir()
        write_recording(recordings, "127.0.0.1", port)
        correlation_check(recordings)
        log(f"nginx (pid {nginx.pid}) on {url}; {opts.pairs} pairs of {opts.seconds:g}s runs, "
            f"{opts.users} users, spawn rate {opts.users}/s")
        for pair in range(1, opts.pairs + 1):
            # ABBA order (ours first in odd pairs, plain first in even ones): a machine that
            # drifts slower or faster during the benchmark then favours neither side.
            for side in ("ours", "plain") if pair % 2 else ("plain", "ours"):
                tag = f"{side}-{pair}"
                out = tmp / f"{tag}.json" if side == "ours" else tmp / tag
                args = (ours_args(recordings, url, opts.users, opts.seconds, out) if side == "ours"
                        else plain_args(url, opts.users, opts.seconds, out))
                served_before = nginx_requests(status_port)
                server_before, (busy_before, steal_before) = tree_cpu_seconds(nginx.pid), machine_cpu()
                code, wall, cpu, mid = run_tree(args, tmp, tmp / f"{tag}.log", timeout=opts.seconds + 120,
                                                sample=sample_at, count=lambda: nginx_requests(status_port))
                server_cpu = tree_cpu_seconds(nginx.pid) - server_before
                served = nginx_requests(status_port) - served_before - 3  # less our own three reads
                busy, steal = machine_cpu()
                # Noise: what the rest of the machine (other users, hypervisor) took meanwhile.
                others_cpu = max(busy - busy_before - cpu - server_cpu, 0.0)
                steal_cpu = steal - steal_before
                if nginx.poll() is not None:
                    raise RuntimeError(f"nginx died (exit code {nginx.returncode}); see {tmp}/nginx-error.log")
                figures = read_ours(out) if side == "ours" else read_plain(out)
                if code != 0:
                    problems.append(f"{tag}: exit code {code} (log: {tmp / f'{tag}.log'})")
                if figures["failures"]:
                    problems.append(f"{tag}: {figures['failures']} failures (log: {tmp / f'{tag}.log'})")
                problems += check_mix(tag, figures["mix"])
                problems += [f"{tag}: {p}" for p in figures["problems"]]
                # What the side reports against what nginx served (requests cut off at the end aside):
                # SESSION rows or any other non-request must not be counted as requests.
                if abs(served - figures["requests"]) > opts.users:
                    problems.append(f"{tag}: reports {figures['requests']} requests, nginx served {served}")
                rps = figures["requests"] / figures["window_s"]
                run = {"side": side, "pair": pair, "exit_code": code, "wall_s": wall, "cpu_s": cpu,
                       "server_cpu_s": server_cpu, "others_cpu_s": others_cpu, "steal_s": steal_cpu,
                       "requests": figures["requests"], "served": served,
                       "failures": figures["failures"], "sessions": figures["sessions"],
                       "window_s": figures["window_s"], "rps": rps,
                       "cpu_ms_per_1k": cpu * 1e6 / figures["requests"],
                       "mid": mid,
                       "mix": {f"{m} {n}": c for (m, n), c in sorted(figures["mix"].items())}}
                runs.append(run)
                log(f"  {tag:8} {run['requests']:>8} req  {rps:8.1f} req/s  cpu {cpu:6.2f} s  "
                    f"{run['cpu_ms_per_1k']:6.1f} ms/1k req  mid-run {_fmt(mid and mid['rps'], '.1f')} req/s "
                    f"{_fmt(mid and mid['cpu_ms_per_1k'], '.1f')} ms/1k req  failures {run['failures']}")
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
            "platform": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}"}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(runs: list[dict], opts: argparse.Namespace) -> None:
    print(f"\n{'run':<9}{'requests':>10}{'window s':>10}{'req/s':>10}{'CPU s':>8}{'CPU ms/1k':>11}"
          f"{'mid util':>10}{'mid req/s':>11}{'mid ms/1k':>11}{'nginx CPU s':>13}{'others CPU s':>14}"
          f"{'sessions':>10}{'failures':>10}")
    for r in runs:
        mid = r["mid"] or {}
        print(f"{r['side'] + '-' + str(r['pair']):<9}{r['requests']:>10}{r['window_s']:>10.2f}{r['rps']:>10.1f}"
              f"{r['cpu_s']:>8.2f}{r['cpu_ms_per_1k']:>11.1f}{_fmt(mid.get('cpu_util'), '.2f'):>10}"
              f"{_fmt(mid.get('rps'), '.1f'):>11}{_fmt(mid.get('cpu_ms_per_1k'), '.1f'):>11}"
              f"{r['server_cpu_s']:>13.2f}{r['others_cpu_s'] + r['steal_s']:>14.2f}{r['sessions']:>10}"
              f"{r['failures']:>10}")
    ratios = []
    for p in sorted({r["pair"] for r in runs}):
        ours = next((r for r in runs if r["pair"] == p and r["side"] == "ours"), None)
        plain = next((r for r in runs if r["pair"] == p and r["side"] == "plain"), None)
        if ours and plain:
            a, b = ours["mid"] or {}, plain["mid"] or {}
            ratios.append({"pair": p, "rps": ours["rps"] / plain["rps"],
                           "cpu_per_request": ours["cpu_ms_per_1k"] / plain["cpu_ms_per_1k"],
                           "mid_rps": a["rps"] / b["rps"] if a.get("rps") and b.get("rps") else None,
                           "mid_cpu_per_request": (a["cpu_ms_per_1k"] / b["cpu_ms_per_1k"]
                                                   if a.get("cpu_ms_per_1k") and b.get("cpu_ms_per_1k") else None)})
    summary: dict[str, float | None] = {}

    def median(key: str) -> float | None:
        values = [r[key] for r in ratios if r[key] is not None]
        return statistics.median(values) if values else None

    if ratios:
        print(f"\n{'pair':>4}  {'req/s':>8}  {'CPU/request':>12}  {'mid-run req/s':>14}  {'mid-run CPU/request':>20}"
              "   <- ours/plain")
        for r in ratios:
            print(f"{r['pair']:>4}  {r['rps']:>8.3f}  {r['cpu_per_request']:>12.3f}  {_fmt(r['mid_rps'], '.3f'):>14}"
                  f"  {_fmt(r['mid_cpu_per_request'], '.3f'):>20}")
        summary = {"median_rps_ratio": median("rps"), "median_cpu_per_request_ratio": median("cpu_per_request"),
                   "median_mid_rps_ratio": median("mid_rps"),
                   "median_mid_cpu_per_request_ratio": median("mid_cpu_per_request")}
        print(f"\nmedian ours/plain req/s, whole run:                 {_fmt(summary['median_rps_ratio'], '.3f')}"
              "  (target >= 0.95)")
        print("median ours/plain CPU per request, whole run:       "
              f"{_fmt(summary['median_cpu_per_request_ratio'], '.3f')}  (target <= 1.10)")
        print(f"median ours/plain req/s, mid-run:                   {_fmt(summary['median_mid_rps_ratio'], '.3f')}")
        print(f"median ours/plain CPU per request, mid-run:         "
              f"{_fmt(summary['median_mid_cpu_per_request_ratio'], '.3f')}")
    if opts.json:
        opts.json.write_text(json.dumps({
            "command": " ".join([sys.executable, *sys.argv]), "machine": machine(),
            "users": opts.users, "seconds": opts.seconds, "pairs": opts.pairs,
            "runs": runs, "ratios": ratios, **summary}, indent=2) + "\n")
        log(f"raw figures written to {opts.json}")


if __name__ == "__main__":
    sys.exit(main())
