"""Recorder throughput: `replay record` (our addon, default options) against plain `mitmdump -q`.

    .venv/bin/python benchmarks/recorder_throughput.py [--seconds 20] [--pairs 3] [--connections 16]
                                                        [--long 180] [--json OUT]

Both sides run mitmproxy in reverse mode in front of the same local nginx (1 worker,
access log off, `return 200 "ok\\n"`; it and the process helpers are benchmarks/harness.py's),
and take the same load from `wrk` (Debian's; it has no proxy support, hence reverse
mode): one thread, N keep-alive connections, a Lua script cycling through four browser-like
requests (two GETs with query strings, a JSON POST, a form POST; ~10 headers each).

- plain: `mitmdump -q --mode reverse:URL` (no addon: the ceiling);
- ours: `replay record DIR --mode reverse:URL` with its default options (redaction on,
  idle gap 30 s, body cap 256 KiB, crash journal with fsync every second, live counters).

Runs alternate in ABBA order (ours, plain, plain, ours, ...) so that drift favours neither
side; the figures are medians of per-pair ratios: wrk's requests/s, and the proxy
process's CPU time (user + system, from /proc) per request over the measured run. mitmproxy
is one busy Python thread here, so its throughput is the inverse of its CPU per request:
the CPU ratio is the same comparison, far less disturbed by whatever else the machine runs. Before each
measured run, 2 s of warm-up load. After each run of ours, the recorder is stopped with
SIGINT and the requests in its session files are counted: the comparison means nothing
if the recorder did not record what it proxied.

Then one long run of each side (`--long` seconds, same load) samples the proxy's RSS every
2 s: all the load comes from one client address and User-Agent, so for ours it is ONE
session that never goes idle, the worst case for a recorder that held open sessions in
memory. Reported: RSS after 10%, 50% and 100% of the run, and the growth from the 10% mark
to the end, per minute and per 1000 requests.

Not a test: it takes minutes. Results and the command go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The benchmarks' shared helpers for nginx, processes and /proc; our nginx answers a bare 200.
from harness import (  # noqa: E402
    OK_LOCATION,
    apt_install,
    cpu_seconds,
    ensure_nginx,
    free_port,
    log,
    rss_mib,
    start_nginx,
    stop,
    wait_listening,
)

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
WRK_SCRIPT = r"""
local ua = "%(ua)s"
local common = {["User-Agent"] = ua, ["Accept-Language"] = "en-US,en;q=0.9", ["Accept-Encoding"] = "gzip, deflate",
  ["Sec-Fetch-Site"] = "same-origin", ["Cookie"] = "sid=4f1c2a9be07d4e51; theme=dark"}
local function with(extra)
  local h = {}
  for k, v in pairs(common) do h[k] = v end
  for k, v in pairs(extra) do h[k] = v end
  return h
end
local page = {["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8", ["Sec-Fetch-Mode"] = "navigate",
  ["Upgrade-Insecure-Requests"] = "1"}
local api = {["Accept"] = "application/json", ["X-Requested-With"] = "XMLHttpRequest", ["Sec-Fetch-Mode"] = "cors"}
local requests = {}
local i = 0
function init(args)
  requests[1] = wrk.format("GET", "/items?page=2&sort=price", with(page))
  requests[2] = wrk.format("GET", "/api/items/17?fields=name,price", with(api))
  requests[3] = wrk.format("POST", "/api/cart", with({["Content-Type"] = "application/json",
    ["Accept"] = "application/json"}), '{"item_id":17,"quantity":2,"options":{"size":"M","colour":"blue"}}')
  requests[4] = wrk.format("POST", "/checkout", with({["Content-Type"] = "application/x-www-form-urlencoded"}),
    "name=Ada+Lovelace&email=ada%%40example.com&address=12+Analytical+Way&country=GB&accept_terms=on")
end
function request()
  i = i %% #requests + 1
  return requests[i]
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is not on PATH: installing it with apt-get (Debian package 'wrk')")
    apt_install("wrk")
    return shutil.which("wrk") or "/usr/bin/wrk"


def start_proxy(side: str, upstream: str, tmp: Path, tag: str) -> tuple[subprocess.Popen[bytes], int, Path | None]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    mitmdump = Path(sys.executable).with_name("mitmdump")
    directory = None
    if side == "plain":
        args = [str(mitmdump), "-q", "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
                "--listen-port", str(port)]
    else:
        directory = tmp / f"rec-{tag}"
        replay = Path(sys.executable).with_name("replay")
        args = [str(replay), "record", str(directory), "--mode", f"reverse:{upstream}", "--listen-port", str(port)]
    logfile = (tmp / f"{tag}.log").open("wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    wait_listening(port, proc, f"{side} proxy", timeout=30)
    return proc, port, directory


def run_wrk(wrk: str, script: Path, port: int, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"rps": rps, "requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}


def count_recorded(directory: Path) -> int:
    return sum(len(json.loads(p.read_bytes())["requests"]) for p in directory.glob("*.json"))


def stop_recorder(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """SIGINT (the recorder writes every open session), wait; return the seconds it took."""
    start = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"the proxy did not stop within {timeout:.0f}s of SIGINT") from None
    return time.perf_counter() - start


def measured_run(side: str, tag: str, upstream: str, tmp: Path, wrk: str, script: Path, opts: argparse.Namespace,
                 seconds: float, sample_every: float | None = None) -> dict[str, object]:
    proc, port, directory = start_proxy(side, upstream, tmp, tag)
    samples: list[tuple[float, float]] = []
    try:
        warm = run_wrk(wrk, script, port, opts.connections, 2)
        cpu_before = cpu_seconds(proc.pid)
        if sample_every is None:
            figures = run_wrk(wrk, script, port, opts.connections, seconds)
        else:
            load = subprocess.Popen([wrk, "-t1", f"-c{opts.connections}", f"-d{seconds:g}s", "-s", str(script),
                                     f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
            start = time.monotonic()
            try:
                while load.poll() is None:
                    if (rss := rss_mib(proc.pid)) is not None:
                        samples.append((time.monotonic() - start, rss))
                    time.sleep(sample_every)
            finally:
                stop(load)
            text = load.stdout.read() if load.stdout else ""
            figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
                       "requests": int(re.search(r"(\d+) requests in", text).group(1)),  # type: ignore[union-attr]
                       "non_2xx": 0, "socket_errors": 0}
        rss_end = rss_mib(proc.pid)
        cpu = cpu_seconds(proc.pid) - cpu_before
        stop_s = stop_recorder(proc, timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run: dict[str, object] = {"side": side, "tag": tag, **figures, "warmup_requests": warm["requests"],
                              "cpu_s": cpu, "cpu_ms_per_request": cpu * 1000 / max(figures["requests"], 1),
                              "rss_end_mib": rss_end, "stop_s": stop_s}
    if directory is not None:
        run["recorded"] = count_recorded(directory)
        run["proxied"] = int(figures["requests"]) + int(warm["requests"])
        shutil.rmtree(directory, ignore_errors=True)
    if samples:
        run["rss_samples"] = samples
    return run


def growth(run: dict[str, object], seconds: float) -> dict[str, float]:
    samples: list[tuple[float, float]] = run["rss_samples"]  # type: ignore[assignment]
    at = {f: min(samples, key=lambda s: abs(s[0] - f * seconds))[1] for f in (0.1, 0.5, 1.0)}
    minutes = 0.9 * seconds / 60
    requests = 0.9 * float(run["requests"])  # type: ignore[arg-type]
    return {"rss_10pct": at[0.1], "rss_50pct": at[0.5], "rss_end": at[1.0],
            "mib_per_min": (at[1.0] - at[0.1]) / minutes, "kib_per_1k_requests": (at[1.0] - at[0.1]) * 1024 /
            (requests / 1000)}


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)  # clean up (proxies, nginx) as on Ctrl-C
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each measured run")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (ours, plain)")
    parser.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections")
    parser.add_argument("--long", type=float, default=180, help="length of the memory runs (0: none)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    opts = parser.parse_args()

    wrk, nginx_bin = ensure_wrk(), ensure_nginx()
    tmp = Path(tempfile.mkdtemp(prefix="recorder-bench-"))
    script = tmp / "load.lua"
    script.write_text(WRK_SCRIPT % {"ua": UA})
    nginx = None
    runs: list[dict[str, object]] = []
    long_runs: list[dict[str, object]] = []
    problems: list[str] = []
    try:
        nginx, nginx_port = start_nginx(nginx_bin, tmp, OK_LOCATION)
        upstream = f"http://127.0.0.1:{nginx_port}"
        log(f"nginx on {upstream}; {opts.pairs} pairs of {opts.seconds:g}s runs, wrk -t1 -c{opts.connections}")
        for pair in range(1, opts.pairs + 1):
            for side in ("ours", "plain") if pair % 2 else ("plain", "ours"):
                run = measured_run(side, f"{side}-{pair}", upstream, tmp, wrk, script, opts, opts.seconds)
                runs.append(run)
                extra = (f"  recorded {run['recorded']}/{run['proxied']}  stop {run['stop_s']:.1f}s"
                         if side == "ours" else "")
                log(f"  {run['tag']:8} {run['rps']:8.1f} req/s  {run['requests']:>7} req  "
                    f"CPU {run['cpu_ms_per_request']:.3f} ms/req  RSS {run['rss_end_mib']:.0f} MiB{extra}")
                if run["non_2xx"] or run["socket_errors"]:
                    problems.append(f"{run['tag']}: {run['non_2xx']} non-2xx, {run['socket_errors']} socket errors")
                # wrk counts what it got back before its deadline; the proxy finished up to one more
                # request per connection in each of the two wrk runs.
                if side == "ours" and not 0 <= int(run["recorded"]) - int(run["proxied"]) <= 2 * opts.connections:
                    problems.append(f"{run['tag']}: recorded {run['recorded']} of {run['proxied']} requests")
        if opts.long:
            for side in ("ours", "plain"):
                log(f"long run: {side}, {opts.long:g}s")
                run = measured_run(side, f"{side}-long", upstream, tmp, wrk, script, opts, opts.long,
                                   sample_every=2.0)
                run.update(growth(run, opts.long))
                long_runs.append(run)
                log(f"  {side}: RSS {run['rss_10pct']:.0f} -> {run['rss_50pct']:.0f} -> {run['rss_end']:.0f} MiB "
                    f"({run['mib_per_min']:+.1f} MiB/min, {run['kib_per_1k_requests']:+.1f} KiB per 1000 requests)"
                    + (f", recorded {run['recorded']}/{run['proxied']}, stop {run['stop_s']:.1f}s"
                       if side == "ours" else ""))
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"error: {e}; files kept in {tmp}")
        return 2
    except KeyboardInterrupt:
        log(f"interrupted; files kept in {tmp}")
        return 130
    finally:
        stop(nginx, signal.SIGQUIT)

    ratios, cpu_ratios = [], []
    for p in range(1, opts.pairs + 1):
        ours = next(r for r in runs if r["tag"] == f"ours-{p}")
        plain = next(r for r in runs if r["tag"] == f"plain-{p}")
        ratios.append(float(ours["rps"]) / float(plain["rps"]))  # type: ignore[arg-type]
        cpu_ratios.append(float(plain["cpu_ms_per_request"]) / float(ours["cpu_ms_per_request"]))  # type: ignore[arg-type]
    median, cpu_median = statistics.median(ratios), statistics.median(cpu_ratios)
    print(f"\nper-pair ours/plain req/s:                   {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"per-pair plain/ours CPU per request:         {', '.join(f'{r:.3f}' for r in cpu_ratios)}")
    print(f"median ours/plain req/s:                     {median:.3f}  (target >= 0.95, issue 10)")
    print(f"median plain/ours CPU per request (capacity): {cpu_median:.3f}")
    if opts.json:
        opts.json.write_text(json.dumps({"command": " ".join([sys.executable, *sys.argv]), "runs": runs,
                                         "long_runs": long_runs, "ratios": ratios, "median_ratio": median,
                                         "cpu_ratios": cpu_ratios, "median_cpu_ratio": cpu_median,
                                         "nproc": os.cpu_count()}, indent=2) + "\n")
    for problem in problems:
        log(f"PROBLEM: {problem}")
    if not problems:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
