"""Timing under load (issue 10): the gaps a target sees between each virtual user's requests,
against the recorded think time divided by ``--speed``.

    .venv/bin/python benchmarks/timing_under_load.py [--users 20 100] [--speeds 1 4] [--seconds 20]
        [--repeats 3] [--json OUT]

The recording (generated with the format models) is one session of ``len(THINK_MS) + 1``
GET requests, ``/t/1`` .. ``/t/N``, with the think times ``THINK_MS`` between the end of one
recorded response and the start of the next request. ``replay run`` replays it headless
(closed model, correlation on, spawn rate = users) against a target on 127.0.0.1 that this
script runs in a thread of its own: it answers ``200 ok`` at once and logs, for every request,
its ``X-Client`` header (each virtual user sends its own, from a ``--data`` row), its step
(the path) and its arrival time. The arrival time is the kernel's receive timestamp of the
packet (``SO_TIMESTAMPNS``), not the time the server got round to reading it: the target's
own scheduling on a busy machine does not enter the figures.

Per virtual user, the gap between two consecutive steps of one session run is compared with
the recorded think time divided by the speed; the error is (arrival gap - think / speed), so
it includes the replayed response time (a fraction of a millisecond here) as the SPEC's
semantics do: the think time runs from the response. The report also gives the error from
the target's answer to the next arrival (the replayer's own share, without the target's
latency). Gaps in the first ``WARMUP_S`` seconds (ramp-up) and the last ``COOLDOWN_S``
second (Locust stopping every user at once) are left out. Each configuration runs ``--repeats``
times, interleaved (20 users speed 1, 20 users speed 4, 100 users speed 1, ..., then again),
so that a machine that gets busier during the benchmark does not favour one of them; the
report gives each run and, per configuration, the median with the range. The CPU that the
rest of the machine used meanwhile (other users of the machine, from /proc/stat) is
reported per run, as a measure of the noise.

Not a test: it takes minutes and its figures depend on the machine. Results and the command
go in docs/benchmarks.md. Exit code 1 when a run exited non-zero, failed a request or sent
too few requests to judge.
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import signal
import socket
import statistics
import struct
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from harness import log, machine_cpu
from replay_sides import replay_command, run_tree

from traffic_replay.format import Body, Request, Response, Session, write_session

THINK_MS = (20.0, 150.0, 60.0, 300.0, 100.0, 40.0, 500.0, 80.0, 200.0, 120.0)
"""Recorded think times between consecutive steps (ms): mean 157 ms, so ~6 requests/s per user at speed 1."""
DURATION_MS = 30.0  # recorded response time; the think time runs from the response end, not the request start
WARMUP_S = 2.0  # ramp-up: spawning the users
COOLDOWN_S = 1.0  # shut-down: Locust stopping every user at once stalls its loop for tens of ms
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

Arrival = tuple[str, int, float, float]  # (X-Client, step, arrived, answered), in s since the epoch


class ArrivalTarget:
    """An HTTP/1.1 target on 127.0.0.1 that answers every request ``200 ok`` and logs its arrival."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        # On the listener too: a request that arrives before accept() returns is stamped as well.
        self.listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.arrivals: list[Arrival] = []
        self.unstamped = 0  # requests without a kernel timestamp (none expected on Linux)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="arrival-target", daemon=True)
        self._thread.start()

    def take(self) -> list[Arrival]:
        """The arrivals logged so far, and a fresh log."""
        taken, self.arrivals = self.arrivals, []
        return taken

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ, None)
            while not self._stopping.is_set():
                for key, _ in selector.select(0.1):
                    if key.data is None:
                        self._accept(selector)
                    else:
                        self._read(selector, key.fileobj, key.data)  # type: ignore[arg-type]
            for key in list(selector.get_map().values()):
                if key.data is not None:
                    key.fileobj.close()  # type: ignore[union-attr]

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        selector.register(conn, selectors.EVENT_READ, bytearray())

    def _read(self, selector: selectors.BaseSelector, conn: socket.socket, buffer: bytearray) -> None:
        try:
            data, ancillary, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            selector.unregister(conn)
            conn.close()
            return
        stamp = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(value[:_TIMESPEC.size])
                stamp = seconds + nanoseconds / 1e9
        if stamp is None:
            stamp = time.time()
            self.unstamped += 1
        buffer += data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:  # GET requests: no body
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            try:
                conn.send(_RESPONSE)
            except OSError:
                selector.unregister(conn)
                conn.close()
                return
            self._log(head, stamp, time.time())

    def _log(self, head: bytes, stamp: float, answered: float) -> None:
        lines = head.split(b"\r\n")
        path = lines[0].split(b" ")[1]
        client = next((line.split(b":", 1)[1].strip().decode() for line in lines[1:]
                       if line[:9].lower() == b"x-client:"), "")
        step = int(path.rsplit(b"/", 1)[1]) if path.startswith(b"/t/") else 0
        self.arrivals.append((client, step, stamp, answered))


def write_recording(directory: Path) -> None:
    """The timed session: GET /t/1 .. /t/N, with the think times of THINK_MS between them."""
    requests = []
    offset = 0.0
    for step in range(1, len(THINK_MS) + 2):
        requests.append(Request(
            offset_ms=offset, duration_ms=DURATION_MS, method="GET", scheme="http", host="127.0.0.1", port=8000,
            path=f"/t/{step}", headers=[("Host", "127.0.0.1:8000"), ("User-Agent", "Mozilla/5.0 (bench)"),
                                         ("Accept", "*/*"), ("X-Client", "rec-client")],
            response=Response(status=200, duration_ms=DURATION_MS / 2, headers=[("Content-Type", "text/plain")],
                              body=Body.from_bytes(b"ok", "text/plain"))))
        if step <= len(THINK_MS):
            offset += DURATION_MS + THINK_MS[step - 1]
    directory.mkdir()
    write_session(Session(id="timed", name="timed", started_at=datetime(2026, 1, 1, tzinfo=UTC),
                          requests=requests), directory)


def gap_errors(arrivals: list[Arrival], speed: float, warmup_s: float = WARMUP_S,
               cooldown_s: float = COOLDOWN_S) -> tuple[list[float], list[float]]:
    """Signed errors (ms) between consecutive steps of each session run, per virtual user:
    (arrival gap - think / speed, time from the target's answer to the next arrival - think / speed)."""
    if not arrivals:
        return [], []
    since = min(a[2] for a in arrivals) + warmup_s
    until = max(a[2] for a in arrivals) - cooldown_s
    by_client: defaultdict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for client, step, arrived, answered in arrivals:
        by_client[client].append((arrived, answered, step))
    gaps: list[float] = []
    thinks: list[float] = []
    for seen in by_client.values():
        seen.sort()
        for (t0, answered0, step0), (t1, _, step1) in zip(seen, seen[1:], strict=False):
            if step1 == step0 + 1 and since <= t0 and t1 <= until:  # the same session run (/t/1 starts the next one)
                expected = THINK_MS[step0 - 1] / speed
                gaps.append((t1 - t0) * 1000 - expected)
                thinks.append((t1 - answered0) * 1000 - expected)
    return gaps, thinks


def figures(errors: list[float]) -> dict[str, float]:
    magnitudes = sorted(abs(e) for e in errors)

    def at(q: float) -> float:
        return magnitudes[min(len(magnitudes) - 1, int(q * len(magnitudes)))]

    return {"gaps": len(errors), "mean_signed_ms": statistics.fmean(errors), "p50_ms": at(0.50),
            "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": magnitudes[-1]}


def one_run(target: ArrivalTarget, tmp: Path, replay: list[str], recordings: Path, rows: Path, users: int,
            speed: float, seconds: float, tag: str) -> tuple[dict, list[str]]:
    summary = tmp / f"{tag}.json"
    args = [*replay, "run", str(recordings), "--host", target.url, "-u", str(users), "-r", str(users),
            "-t", f"{seconds:g}s", "--headless", "--speed", f"{speed:g}", "--no-check", "--data", str(rows),
            "--data-map", "client=rec-client", "--summary-json", str(summary)]
    target.take()
    own_before, (busy_before, steal_before) = resource.getrusage(resource.RUSAGE_SELF), machine_cpu()
    code, wall, cpu, _mid = run_tree(args, tmp, tmp / f"{tag}.log", timeout=seconds + 120)
    own_after, (busy, steal) = resource.getrusage(resource.RUSAGE_SELF), machine_cpu()
    arrivals = target.take()
    own = (own_after.ru_utime - own_before.ru_utime) + (own_after.ru_stime - own_before.ru_stime)
    problems = []
    if code != 0:
        problems.append(f"{tag}: exited with code {code}; see {tmp / f'{tag}.log'}")
    elif json.loads(summary.read_text())["total"]["failures"]:
        problems.append(f"{tag}: requests failed; see {summary}")
    errors, thinks = gap_errors(arrivals, speed)
    if len(errors) < users * len(THINK_MS):
        problems.append(f"{tag}: only {len(errors)} gaps to judge")
        return {"tag": tag, "users": users, "speed": speed, "gaps": len(errors)}, problems
    answer_ms = sorted((a[3] - a[2]) * 1000 for a in arrivals)
    run = {"tag": tag, "users": users, "speed": speed, **figures(errors), "requests": len(arrivals),
           "from_answer": figures(thinks), "answer_p95_ms": answer_ms[int(0.95 * len(answer_ms))],
           "clients": len({a[0] for a in arrivals}), "replay_cpu_util": cpu / wall,
           "others_cpu_util": max(busy - busy_before - cpu - own, 0.0) / wall, "steal_s": steal - steal_before}
    log(f"{tag}: {run['gaps']} gaps, |error| p50 {run['p50_ms']:.2f} p95 {run['p95_ms']:.2f} p99 {run['p99_ms']:.2f}"
        f" max {run['max_ms']:.1f} ms, mean {run['mean_signed_ms']:+.2f} ms; from the answer: p95"
        f" {run['from_answer']['p95_ms']:.2f} ms; answer p95 {run['answer_p95_ms']:.2f} ms;"
        f" replay CPU {run['replay_cpu_util']:.0%}, others {run['others_cpu_util']:.0%}")
    return run, problems


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]".ljust(17)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[20, 100], help="user counts to run")
    parser.add_argument("--speeds", type=float, nargs="+", default=[1.0, 4.0], help="--speed values to run")
    parser.add_argument("--seconds", type=float, default=20, help="run time of each run (at least 5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--replay", type=Path, nargs="+",
                        help="`replay` executables to compare, interleaved (e.g. another checkout's venv/bin/replay);"
                             " default: this environment's")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    opts = parser.parse_args()
    if opts.seconds < 5:
        parser.error("--seconds must be at least 5")
    replays = [[str(r.absolute())] for r in opts.replay] if opts.replay else [replay_command()]
    signal.signal(signal.SIGTERM, _interrupted)  # clean up as on Ctrl-C
    tmp = Path(tempfile.mkdtemp(prefix="replay-timing-"))
    recordings = tmp / "recordings"
    write_recording(recordings)
    rows = tmp / "clients.csv"
    rows.write_text("client\n" + "".join(f"u{i:03}\n" for i in range(max(opts.users))))
    target = ArrivalTarget()
    configs = [(side, users, speed) for users in opts.users for speed in opts.speeds for side in range(len(replays))]
    log(f"target on {target.url}; {opts.repeats} x {len(configs)} runs of {opts.seconds:g}s; files under {tmp}")
    runs: list[dict] = []
    problems: list[str] = []
    try:
        for repeat in range(1, opts.repeats + 1):
            for side, users, speed in configs:
                run, found = one_run(target, tmp, replays[side], recordings, rows, users, speed, opts.seconds,
                                     f"r{side}-u{users}-s{speed:g}-{repeat}")
                runs.append({"replay": replays[side][0], **run})
                problems += found
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        target.close()
    if target.unstamped:
        log(f"note: {target.unstamped} requests had no kernel timestamp: their arrival is the time they were read")
    print("gap error |arrival gap - think / speed|, ms: median [min-max] over the runs")
    print(f"{'replay':<40} {'users':>5} {'speed':>5} {'runs':>4}  {'p50':<17} {'p95':<17} {'p99':<17}"
          f" {'max':<19} {'mean signed':<17}")
    for side, users, speed in configs:
        mine = [r for r in runs if r["replay"] == replays[side][0] and r["users"] == users and r["speed"] == speed
                and "p95_ms" in r]
        if mine:
            print(f"{replays[side][0][-40:]:<40} {users:>5} {speed:>5g} {len(mine):>4}  "
                  + " ".join(spread([r[k] for r in mine])
                             for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_signed_ms")))
    if opts.json:
        opts.json.write_text(json.dumps({"think_ms": THINK_MS, "seconds": opts.seconds, "runs": runs}, indent=2))
    for problem in problems:
        log(f"problem: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
