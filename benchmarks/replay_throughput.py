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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN_LOCUSTFILE = HERE / "plain_locustfile.py"

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
NEW_ITEM = b'{"name":"Desk lamp","price":1999,"tags":["home","light"]}'
CHECKOUT = b"name=Ada+Lovelace&email=ada%40example.com&address=12+Analytical+Way&country=GB&accept_terms=on"

# What `POST /api/items` answers: an id and a token that the requests after it send back
# (the id in a path and a JSON body, the token in a header). The recording holds these; nginx
# answers the same ones in the timed runs; the wire check's server hands out others.
ITEM_ID, TOKEN = 4711, "t0k3n4711abcdef"
WIRE_ITEM_ID, WIRE_TOKEN = 90210, "w1r3tok90210zyxw"


def created(item_id: int, token: str) -> bytes:
    return b'{"item": {"id": %d, "token": "%s"}}' % (item_id, token.encode())


OK = (200, "text/plain", b"ok\n")


def workload(item_id: int, token: str) -> list[tuple]:
    """(method, path, headers, body or None, stats name, recorded response (status, type, body))."""
    with_token = [("X-Token", token)]
    cart = b'{"item_id":%d,"quantity":2,"options":{"size":"M","colour":"blue"}}' % item_id
    return [
        ("GET", "/", PAGE, None, "/", OK),
        ("GET", "/api/items?page=2&sort=price", API, None, "/api/items", OK),
        ("GET", "/items/17", PAGE, None, "/items/{id}", OK),
        ("POST", "/api/items", API_JSON, NEW_ITEM, "/api/items", (201, "application/json", created(item_id, token))),
        ("GET", f"/api/items/{item_id}", [*API, *with_token], None, "/api/items/{id}", OK),
        ("POST", "/api/cart", [*API_JSON, *with_token], cart, "/api/cart", OK),
        ("POST", "/checkout", PAGE_FORM, CHECKOUT, "/checkout", OK),
        ("GET", "/orders/4242?tab=summary", PAGE, None, "/orders/{id}", OK),
    ]


# The recorded workload; benchmarks/plain_locustfile.py is the hand-written twin of it.
WORKLOAD = workload(ITEM_ID, TOKEN)
# The values our replayer must extract live from `POST /api/items` (checked with `replay inspect`).
LIVE_VALUES = {str(ITEM_ID), TOKEN}

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
        # GET lists items ("ok", as recorded); POST creates one and answers its id and token.
        location = /api/items {{
            if ($request_method = POST) {{
                rewrite ^ /_created last;
            }}
            default_type text/plain;
            return 200 "ok\\n";
        }}
        location = /_created {{
            internal;
            default_type application/json;
            return 201 '{created}';
        }}
    }}
    # Requests handled so far, read mid-run: a request count neither side has to report.
    server {{
        listen 127.0.0.1:{status_port};
        location / {{
            stub_status;
        }}
    }}
}}
"""


def start_nginx(binary: str, tmp: Path) -> tuple[subprocess.Popen, int, int]:
    """nginx on a free port, and its stub_status page on another: (process, port, status port)."""
    port, status_port = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, status_port=status_port,
                                      created=created(ITEM_ID, TOKEN).decode()))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, proc, "nginx")
    except BaseException:
        stop(proc, signal.SIGTERM)
        raise
    return proc, port, status_port


def nginx_requests(status_port: int) -> int:
    """Requests nginx has handled since it started (its stub_status counter; the reads count too)."""
    with socket.create_connection(("127.0.0.1", status_port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: status\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    # "... server accepts handled requests\n 12 12 345 \n..."
    lines = answer.decode("ascii", "replace").splitlines()
    at = next(i for i, line in enumerate(lines) if "accepts handled requests" in line)
    return int(lines[at + 1].split()[2])


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
    for method, path, headers, body, _name, (status, rtype, rbody) in WORKLOAD:
        # What the browser sent on the wire, as the recorder keeps it: Host, Connection and
        # Content-Length included (the replayer owns those), in the browser's order.
        recorded = [("Host", f"{host}:{port}"), *headers, ("Connection", "keep-alive")]
        if body is not None:
            recorded.append(("Content-Length", str(len(body))))
        ctype = dict(headers).get("Content-Type")
        requests.append(Request(
            offset_ms=offset, duration_ms=4.0, method=method, scheme="http", host=host, port=port, path=path,
            headers=recorded, body=Body.from_bytes(body, ctype) if body is not None else None,
            response=Response(status=status, reason="Created" if status == 201 else "OK", duration_ms=3.0,
                              headers=[("Content-Type", rtype), ("Content-Length", str(len(rbody)))],
                              body=Body.from_bytes(rbody, rtype)),
        ))
        offset += 850.0  # think time: ignored at --speed 0
    session = Session(id="bench-shop", name="shop checkout", weight=1.0,
                      started_at=datetime(2025, 1, 1, tzinfo=UTC), requests=requests)
    write_session(session, directory)


def correlation_check(directory: Path) -> None:
    """Our replayer must see the id and the token as live values, as `replay inspect` lists them.

    Detected from the recording, extracted at step 4 and substituted in steps 5 (path,
    header) and 6 (header, body): otherwise the benchmark would measure a verbatim replay.
    """
    from replayer.prepared import prepare_session
    from traffic_replay.format import load_recordings

    [session] = load_recordings(directory)
    prepared = prepare_session(session, speed=0)
    found = {c.value for c in prepared.variables}
    if found != LIVE_VALUES:
        raise RuntimeError(f"correlation check: detected {sorted(found)}, expected {sorted(LIVE_VALUES)}")
    steps = prepared.steps
    shape = [(s.index, len(s.extract), s.patch is not None) for s in steps]
    expected = [(i, 2 if i == 4 else 0, i in (5, 6)) for i in range(1, len(WORKLOAD) + 1)]
    if shape != expected:
        raise RuntimeError(f"correlation check: (step, extractors, patched) {shape}, expected {expected}")
    five, six = steps[4].patch, steps[5].patch
    if not (five.path and [n for n, _ in five.headers] == ["X-Token"] and not five.body
            and six.body and [n for n, _ in six.headers] == ["X-Token"] and not six.path):
        raise RuntimeError("correlation check: steps 5 and 6 do not carry the id and token where they are sent")
    log("correlation check: the id (path of step 5, body of step 6) and the token (X-Token of steps 5 and 6) "
        "are extracted live from step 4's JSON answer")


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
        # Like nginx in the timed runs, but handing out other values than the recorded ones:
        # the requests after it must carry these, on both sides.
        if self.command == "POST" and self.path == "/api/items":
            status, ctype, answer = 201, "application/json", created(WIRE_ITEM_ID, WIRE_TOKEN)
        else:
            status, ctype, answer = OK
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

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
            code, _wall, _cpu, _mid = run_tree(args, tmp, tmp / f"wire-{side}.log", timeout=60)
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
    # The live values, not the recorded ones: what the wire server handed out.
    expected = [(m, p, tuple(sorted((k.lower(), v) for k, v in h)), b or b"")
                for m, p, h, b, _n, _r in workload(WIRE_ITEM_ID, WIRE_TOKEN)]
    for i, ((m, p, h, b), (em, ep, eh, eb)) in enumerate(zip(captured["ours"], expected, strict=True)):
        if (m, p, b) != (em, ep, eb) or not set(eh) <= set(h):
            raise RuntimeError(f"wire check: request {i + 1} is not the workload's, with the live values\n"
                               f"  sent:     {(m, p, h, b)}\n  expected: {(em, ep, eh, eb)}")
    summary = json.loads((tmp / "wire-ours.json").read_text())
    if summary["unsourced"] or summary["divergences"]:
        raise RuntimeError(f"wire check: ours sent recorded values or diverged: unsourced {summary['unsourced']}, "
                           f"divergences {summary['divergences']}")
    log(f"wire check: both sides send the same {len(WORKLOAD)} requests "
        f"(method, path, {len(captured['ours'][0][2])}+ headers, bodies), with the id and token that the "
        f"server handed out ({WIRE_ITEM_ID}, {WIRE_TOKEN}), not the recorded ones")


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
        nginx, port, status_port = start_nginx(nginx_bin, tmp)
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
