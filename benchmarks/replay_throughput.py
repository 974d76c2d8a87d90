"""Replay throughput: `replay run` against a minimal hand-written FastHttpUser locustfile.

    .venv/bin/python benchmarks/replay_throughput.py [--users 20] [--seconds 20] [--pairs 3] [--json OUT]

Both sides send the same six requests (GET pages with ids and query strings, a JSON
POST, a form POST; same headers, bodies and stats names) with no think time to the
same local nginx (1 worker, access log off, `return 200 "ok\\n"`), with the same users,
spawn rate and run time, one Locust process each, headless: ours is
`replay run DIR --speed 0 --no-check` on a recording generated with the format models,
plain is `locust -f benchmarks/plain_locustfile.py`. Runs alternate in ABBA order
(ours, plain, plain, ours, ours, plain, ...) so that a machine that drifts during the
benchmark favours neither side; the figures are the medians of the per-pair ratios.

- requests/s: total requests / the run's stats window (Locust's start of the test to
  its last request timestamp), as each side reports it.
- CPU per request, whole run: user + system seconds of the whole process tree of the
  run (for ours: the `replay` CLI and its Locust child), from RUSAGE_CHILDREN deltas,
  per 1000 requests; start-up and shut-down included.
- CPU per request, steady state: the tree's CPU utilisation between two /proc samples
  taken mid-run, divided by requests/s; start-up and shut-down left out.

Before the timed runs, a wire check sends each side to a capturing HTTP server and
compares the first iteration that arrived (method, path, headers, body): the two
sides must send the same requests, or the comparison means nothing.

Not a test: it takes minutes and its figures depend on the machine. Results and the
command go in docs/benchmarks.md. Exit code 1 when a run failed a request, exited
non-zero or sent a different request mix.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN_LOCUSTFILE = HERE / "plain_locustfile.py"

# The recorded workload; benchmarks/plain_locustfile.py is the hand-written twin of it.
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
PAGE = [
    ("User-Agent", UA),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "same-origin"),
]
API = [
    ("User-Agent", UA),
    ("Accept", "application/json, text/plain, */*"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("X-Requested-With", "XMLHttpRequest"),
    ("Referer", "http://shop.example/"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "cors"),
    ("Sec-Fetch-Site", "same-origin"),
]
API_JSON = [*API, ("Content-Type", "application/json"), ("Origin", "http://shop.example")]
PAGE_FORM = [*PAGE, ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "http://shop.example"),
             ("Referer", "http://shop.example/cart"), ("Cache-Control", "max-age=0")]
CART = b'{"item_id":17,"quantity":2,"options":{"size":"M","colour":"blue"}}'
CHECKOUT = b"name=Ada+Lovelace&email=ada%40example.com&address=12+Analytical+Way&country=GB&accept_terms=on"

# (method, path, headers, body or None, stats name both sides must report)
WORKLOAD = [
    ("GET", "/", PAGE, None, "/"),
    ("GET", "/api/items?page=2&sort=price", API, None, "/api/items"),
    ("GET", "/items/17", PAGE, None, "/items/{id}"),
    ("POST", "/api/cart", API_JSON, CART, "/api/cart"),
    ("POST", "/checkout", PAGE_FORM, CHECKOUT, "/checkout"),
    ("GET", "/orders/4242?tab=summary", PAGE, None, "/orders/{id}"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f}s")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a child we started, by PID: ``sig``, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a run we started in a session of its own: the process group whose id is its PID.

    SIGTERM (Locust shuts down cleanly on it; SIGINT may be ignored when we were started
    in the background), then SIGKILL for whatever is still there after 10 s.
    """
    def signal_group(sig: int) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader; the group lives on while any member does
        if not signal_group(0):
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    proc.wait()


# --- nginx -----------------------------------------------------------------------------

def ensure_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    log("nginx is not on PATH: installing it with apt-get (Debian package 'nginx')")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise RuntimeError("apt-get installed nginx but no nginx binary was found")
    return found


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
    }}
}}
"""


def start_nginx(binary: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, proc, "nginx")
    except BaseException:
        stop(proc, signal.SIGTERM)
        raise
    return proc, port


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a live process and all its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total / tick


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


# --- the recording ---------------------------------------------------------------------

def write_recording(directory: Path, host: str, port: int) -> None:
    from traffic_replay.format import Body, Request, Response, Session, write_session

    requests = []
    offset = 0.0
    for method, path, headers, body, _name in WORKLOAD:
        # What the browser sent on the wire, as the recorder keeps it: Host, Connection and
        # Content-Length included (the replayer owns those), in the browser's order.
        recorded = [("Host", f"{host}:{port}"), *headers, ("Connection", "keep-alive")]
        if body is not None:
            recorded.append(("Content-Length", str(len(body))))
        ctype = dict(headers).get("Content-Type")
        requests.append(Request(
            offset_ms=offset, duration_ms=4.0, method=method, scheme="http", host=host, port=port, path=path,
            headers=recorded, body=Body.from_bytes(body, ctype) if body is not None else None,
            response=Response(status=200, reason="OK", duration_ms=3.0,
                              headers=[("Content-Type", "text/plain"), ("Content-Length", "3")],
                              body=Body.from_bytes(b"ok\n", "text/plain")),
        ))
        offset += 850.0  # think time: ignored at --speed 0
    session = Session(id="bench-shop", name="shop checkout", weight=1.0,
                      started_at=datetime(2025, 1, 1, tzinfo=UTC), requests=requests)
    write_session(session, directory)


# --- running the two sides -------------------------------------------------------------

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
             sample: tuple[float, float] | None = None) -> tuple[int, float, float, float | None]:
    """Run ``args`` in a new session.

    Return (exit code, wall s, CPU s of the whole tree, steady CPU utilisation): the tree's
    CPU comes from RUSAGE_CHILDREN deltas (every process of it is waited for by its
    parent); the utilisation is the tree's CPU s per wall s between the two ``sample``
    times (s after the start), read from /proc while it runs, which leaves out start-up
    and shut-down.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    samples: list[tuple[float, float]] = []
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for at in sample or ():
                try:
                    proc.wait(max(start + at - time.perf_counter(), 0))
                    break  # ended before the sample time
                except subprocess.TimeoutExpired:
                    samples.append((time.perf_counter(), tree_cpu_seconds(proc.pid)))
            code = proc.wait(max(start + timeout - time.perf_counter(), 0.1))
        except BaseException:  # timeout, Ctrl-C: stop the run (the CLI and its Locust child) and go
            stop_group(proc)
            raise
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    util = (samples[1][1] - samples[0][1]) / (samples[1][0] - samples[0][0]) if len(samples) == 2 else None
    return code, wall, cpu, util


def read_ours(path: Path) -> dict:
    data = json.loads(path.read_text())
    mix = {(e["method"], e["name"]): e["requests"] for e in data["endpoints"]}
    return {"requests": data["total"]["requests"], "failures": data["total"]["failures"],
            "window_s": data["duration_s"], "mix": mix}


def read_plain(prefix: Path) -> dict:
    entries = json.loads(prefix.with_name(prefix.name + ".json").read_text())
    mix = {(e["method"], e["name"]): e["num_requests"] for e in entries}
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    return {"requests": sum(mix.values()), "failures": sum(e["num_failures"] for e in entries),
            "window_s": last - start, "mix": mix}


def check_mix(side: str, mix: dict[tuple[str, str], int]) -> list[str]:
    expected = {(m, name) for m, _p, _h, _b, name in WORKLOAD}
    problems = []
    if set(mix) != expected:
        problems.append(f"{side}: endpoints {sorted(mix)} differ from the workload's {sorted(expected)}")
    total = sum(mix.values()) or 1
    for key, count in mix.items():
        share = count / total
        if abs(share - 1 / len(WORKLOAD)) > 0.01:
            problems.append(f"{side}: {key[0]} {key[1]} is {share:.1%} of the requests, not ~{1 / len(WORKLOAD):.1%}")
    return problems


# --- wire check ------------------------------------------------------------------------

# Headers that depend on the connection or the target, not on the side.
_CONNECTION_HEADERS = {"host", "connection", "content-length"}


class _Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple] = []
    lock = threading.Lock()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = tuple(sorted((k.lower(), v) for k, v in self.headers.items() if k.lower() not in _CONNECTION_HEADERS))
        with self.lock:
            self.seen.append((self.command, self.path, headers, body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    do_GET = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


def first_iteration(seen: list[tuple]) -> list[tuple]:
    n = len(WORKLOAD)
    return seen[:n]


def wire_check(tmp: Path) -> None:
    """One user, one short run per side against a capturing server: the first iteration must match."""
    captured = {}
    for side in ("ours", "plain"):
        port = free_port()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Capture)
        _Capture.seen = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        recordings = tmp / f"wire-recordings-{side}"
        recordings.mkdir()
        write_recording(recordings, "127.0.0.1", port)
        url = f"http://127.0.0.1:{port}"
        args = (ours_args(recordings, url, 1, 2, tmp / "wire-ours.json") if side == "ours"
                else plain_args(url, 1, 2, tmp / "wire-plain"))
        try:
            code, _wall, _cpu, _util = run_tree(args, tmp, tmp / f"wire-{side}.log", timeout=60)
        finally:
            server.shutdown()
            server.server_close()
        if code != 0:
            raise RuntimeError(f"wire check: {side} exited with code {code}; see {tmp / f'wire-{side}.log'}")
        captured[side] = first_iteration(_Capture.seen)
        if len(captured[side]) < len(WORKLOAD):
            raise RuntimeError(f"wire check: {side} sent {len(captured[side])} requests, expected >= {len(WORKLOAD)}")
    if captured["ours"] != captured["plain"]:
        for i, (a, b) in enumerate(zip(captured["ours"], captured["plain"], strict=True)):
            if a != b:
                raise RuntimeError(f"wire check: request {i + 1} differs\n  ours:  {a}\n  plain: {b}")
    expected = [(m, p, b or b"") for m, p, _h, b, _n in WORKLOAD]
    got = [(m, p, b) for m, p, _h, b in captured["ours"]]
    if got != expected:
        raise RuntimeError(f"wire check: requests sent {got} are not the workload {expected}")
    log(f"wire check: both sides send the same {len(WORKLOAD)} requests "
        f"(method, path, {len(captured['ours'][0][2])}+ headers, bodies)")


# --- main ------------------------------------------------------------------------------

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
    # Steady-state CPU sampling: well after start-up (~1.5 s) and before the end of the run.
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
        nginx, port = start_nginx(nginx_bin, tmp)
        url = f"http://127.0.0.1:{port}"
        recordings = tmp / "recordings"
        recordings.mkdir()
        write_recording(recordings, "127.0.0.1", port)
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
                server_before, (busy_before, steal_before) = tree_cpu_seconds(nginx.pid), machine_cpu()
                code, wall, cpu, util = run_tree(args, tmp, tmp / f"{tag}.log", timeout=opts.seconds + 120,
                                                 sample=sample_at)
                server_cpu = tree_cpu_seconds(nginx.pid) - server_before
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
                rps = figures["requests"] / figures["window_s"]
                run = {"side": side, "pair": pair, "exit_code": code, "wall_s": wall, "cpu_s": cpu,
                       "server_cpu_s": server_cpu, "others_cpu_s": others_cpu, "steal_s": steal_cpu,
                       "requests": figures["requests"],
                       "failures": figures["failures"], "window_s": figures["window_s"], "rps": rps,
                       "cpu_ms_per_1k": cpu * 1e6 / figures["requests"],
                       "steady_cpu_util": util,
                       "steady_cpu_ms_per_1k": util * 1e6 / rps if util is not None else None,
                       "mix": {f"{m} {n}": c for (m, n), c in sorted(figures["mix"].items())}}
                runs.append(run)
                log(f"  {tag:8} {run['requests']:>8} req  {rps:8.1f} req/s  cpu {cpu:6.2f} s  "
                    f"{run['cpu_ms_per_1k']:6.1f} ms/1k req  failures {run['failures']}")
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
          f"{'steady util':>13}{'steady ms/1k':>14}{'nginx CPU s':>13}{'others CPU s':>14}{'failures':>10}")
    for r in runs:
        print(f"{r['side'] + '-' + str(r['pair']):<9}{r['requests']:>10}{r['window_s']:>10.2f}{r['rps']:>10.1f}"
              f"{r['cpu_s']:>8.2f}{r['cpu_ms_per_1k']:>11.1f}{_fmt(r['steady_cpu_util'], '.2f'):>13}"
              f"{_fmt(r['steady_cpu_ms_per_1k'], '.1f'):>14}{r['server_cpu_s']:>13.2f}"
              f"{r['others_cpu_s'] + r['steal_s']:>14.2f}{r['failures']:>10}")
    ratios = []
    for p in sorted({r["pair"] for r in runs}):
        ours = next((r for r in runs if r["pair"] == p and r["side"] == "ours"), None)
        plain = next((r for r in runs if r["pair"] == p and r["side"] == "plain"), None)
        if ours and plain:
            steady = (ours["steady_cpu_ms_per_1k"] / plain["steady_cpu_ms_per_1k"]
                      if ours["steady_cpu_ms_per_1k"] and plain["steady_cpu_ms_per_1k"] else None)
            ratios.append({"pair": p, "rps": ours["rps"] / plain["rps"],
                           "cpu_per_request": ours["cpu_ms_per_1k"] / plain["cpu_ms_per_1k"],
                           "steady_cpu_per_request": steady})
    summary: dict[str, float | None] = {}
    if ratios:
        print(f"\n{'pair':>4}  {'req/s':>8}  {'CPU/request (whole run)':>24}  {'CPU/request (steady)':>21}"
              "   <- ours/plain")
        for r in ratios:
            print(f"{r['pair']:>4}  {r['rps']:>8.3f}  {r['cpu_per_request']:>24.3f}"
                  f"  {_fmt(r['steady_cpu_per_request'], '.3f'):>21}")
        steady = [r["steady_cpu_per_request"] for r in ratios if r["steady_cpu_per_request"] is not None]
        summary = {"median_rps_ratio": statistics.median(r["rps"] for r in ratios),
                   "median_cpu_per_request_ratio": statistics.median(r["cpu_per_request"] for r in ratios),
                   "median_steady_cpu_per_request_ratio": statistics.median(steady) if steady else None}
        print(f"\nmedian ours/plain req/s:                           {summary['median_rps_ratio']:.3f}"
              "  (target >= 0.95)")
        print(f"median ours/plain CPU per request, whole run:      {summary['median_cpu_per_request_ratio']:.3f}"
              "  (target <= 1.10)")
        print(f"median ours/plain CPU per request, steady state:   "
              f"{_fmt(summary['median_steady_cpu_per_request_ratio'], '.3f')}")
    if opts.json:
        opts.json.write_text(json.dumps({
            "command": " ".join([sys.executable, *sys.argv]), "machine": machine(),
            "users": opts.users, "seconds": opts.seconds, "pairs": opts.pairs,
            "runs": runs, "ratios": ratios, **summary}, indent=2) + "\n")
        log(f"raw figures written to {opts.json}")


if __name__ == "__main__":
    sys.exit(main())
