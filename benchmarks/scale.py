"""How inspect and replay grow with the size of a recording: 10,000, 100,000 and 1,000,000 requests.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--shapes one,many] [--skip-run]
        [--skip-inspect]

For each size, two shapes of the same generated traffic (a JSON API: a login that hands out
a bearer token, catalogue pages whose items each user opens, carts created by POST and read
back by id, a unique request id per request): **one** session of N requests (a long HAR
imported with ``--per file``) and **many** sessions of 100 (a busy recorder). Ids are unique
per session, as a real database's are, so nothing repeats across sessions that would not in
production. Each measurement is a fresh ``replay`` process, timed from outside, its peak RSS
read from the kernel (``wait4``):

- ``replay inspect DIR`` (load, validate, detect, print) with an empty analysis cache (it fills it), then
  again, and ``replay inspect --json DIR`` (the cache filled: ``traffic_replay.correlation.cache``);
- ``replay run DIR --host <loopback target>``: seconds from the command's start to the first
  request the target receives, and the replay process's resident memory then, beside the
  total size of the recorded bodies (the SPEC: at most twice that plus a fixed overhead);
  then, for a recording large enough to be prepared as it is used (``replayer.loading``), the
  seconds until its log says every session is prepared, and the resident memory at that point;
  once with ``--no-cache`` (detection in the replay), once with what the inspects remembered,
  and once more with what that run remembered of reading the files (``traffic_replay.readings``);
- bytes on disk per request, as written (compact) and as the indented JSON of before.

SPEC: 1,000,000 requests inspect in at most 10 s and 1.5 GB, first request within 20 s,
growth linear. Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from harness import free_port, rss_mib

ROOT = Path(__file__).resolve().parents[1]
REPLAY = str(Path(sys.executable).with_name("replay"))
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _session_requests(n: int, session: int) -> list[object]:
    """``n`` requests of one user; ids unique to the user (a fresh database per user would be too kind)."""
    from traffic_replay.format import Body, Request, Response

    json = "application/json"
    host, port = "127.0.0.1", 8000
    base = [("Host", f"{host}:{port}"), ("User-Agent", AGENT), ("Accept", json),
            ("Accept-Language", "en-GB,en;q=0.9")]
    token = f"eyJhbGciOiJIUzI1NiJ9.{session:08d}.c2lnbmF0dXJl"
    out: list[object] = []
    clock = 0.0

    def add(method: str, path: str, status: int, answer: dict[str, object], sent: dict[str, object] | None = None,
            extra: list[tuple[str, str]] | None = None) -> None:
        nonlocal clock
        body = orjson.dumps(sent) if sent is not None else None
        headers = [*base, ("X-Request-Id", f"{session:08x}-{len(out):08x}"), *(extra or [])]
        if body is not None:
            headers.append(("Content-Type", json))
        data = orjson.dumps(answer)
        out.append(Request(
            offset_ms=clock, duration_ms=8.0, method=method, scheme="http", host=host, port=port, path=path,
            headers=headers, body=Body.from_bytes(body, json) if body is not None else None,
            response=Response(status=status, reason="OK", duration_ms=6.0,
                              headers=[("Content-Type", json), ("Content-Length", str(len(data)))],
                              body=Body.from_bytes(data, json))))
        clock += 250.0

    add("POST", "/api/login", 200, {"access_token": token, "token_type": "bearer", "expires_in": 3600},
        {"username": f"user{session}", "password": "«redacted:0a1b2c3d»"})
    auth = [("Authorization", f"Bearer {token}")]
    page = 0
    while len(out) < n:
        page += 1
        first = session * 1_000_000 + page * 10
        items = [{"id": first + k, "name": f"Item {first + k}", "price": 100 + k, "stock": 3,
                  "description": "A thing people buy, described at the length shops describe things."}
                 for k in range(10)]
        add("GET", f"/api/items?page={page}&size=10", 200, {"items": items, "page": page, "total": 10_000},
            extra=auth)
        for item in items[:3]:
            if len(out) >= n:
                break
            add("GET", f"/api/items/{item['id']}", 200, item, extra=auth)
        if len(out) < n:
            line = first * 7 + 1
            add("POST", "/api/cart/lines", 201, {"id": line, "item_id": first, "quantity": 1},
                {"item_id": first, "quantity": 1}, extra=auth)
            if len(out) < n:
                add("GET", f"/api/cart/lines/{line}", 200, {"id": line, "item_id": first, "quantity": 1},
                    extra=auth)
    return out[:n]


def write_recording(directory: Path, requests: int, per_session: int) -> tuple[int, int, int]:
    """Sessions of ``per_session`` requests; (bytes written, bytes indented, bytes of recorded bodies)."""
    import msgspec

    from traffic_replay.format import Session, write_session

    written = indented = bodies = 0
    started = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(max(requests // per_session, 1)):
        session = Session(id=f"s{n:08d}", name=f"shopper {n % 7}", started_at=started,
                          requests=_session_requests(per_session, n))  # type: ignore[arg-type]
        path = write_session(session, directory)
        written += path.stat().st_size
        indented += len(orjson.dumps(orjson.loads(msgspec.json.encode(session)), option=orjson.OPT_INDENT_2))
        bodies += sum((r.body.size if r.body else 0) + (r.response.body.size if r.response and r.response.body else 0)
                      for r in session.requests)
    return written, indented, bodies


def measured(command: list[str], timeout: float) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of a command run to its end, its output thrown away."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return time.perf_counter() - started, usage.ru_maxrss / 1024, proc.returncode
        if time.perf_counter() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            return float("inf"), usage.ru_maxrss / 1024, -9
        time.sleep(0.02)


class FirstRequest:
    """A loopback target that answers every request with a small 200 and notes when the first arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.first: float | None = None
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                if self.first is None:
                    self.first = time.perf_counter()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def first_request(directory: Path, requests: int, timeout: float, cache: bool = True,
                  ) -> tuple[float, float | None, float, float | None]:
    """``replay run`` against a loopback target: (seconds to the first request the target received,
    the replay's RSS MiB then, seconds until every session was prepared, its RSS MiB then)."""
    eager_up_to, prepared_log = _loading_constants()
    target = FirstRequest()
    env = {**os.environ, "REPLAY_SECRET_0A1B2C3D": "pw"}  # the login's redacted password
    started = time.perf_counter()
    proc = subprocess.Popen([REPLAY, "run", str(directory), "--host", f"http://127.0.0.1:{target.port}", "-u", "1",
                             "-t", f"{int(timeout)}s", "--headless", "--no-check",
                             "--cache" if cache else "--no-cache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    prepared: list[float] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if prepared_log in line and not prepared:
                prepared.append(time.perf_counter())

    threading.Thread(target=watch, daemon=True).start()
    try:
        while target.first is None and time.perf_counter() - started < timeout and proc.poll() is None:
            time.sleep(0.01)
        took = (target.first - started) if target.first is not None else float("inf")
        rss = rss_mib(proc.pid)
        if requests <= eager_up_to:
            return took, rss, took, rss  # prepared whole before the run: nothing left for the background
        while not prepared and time.perf_counter() - started < timeout and proc.poll() is None:
            time.sleep(0.05)
        return took, rss, (prepared[0] - started) if prepared else float("inf"), rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _loading_constants() -> tuple[int, str]:
    """``replayer.loading``'s threshold and log line, read by a child: importing Locust here would
    raise this process's RSS, which the processes it starts inherit as their peak."""
    code = "from replayer.loading import EAGER_UP_TO_REQUESTS as n, PREPARED_LOG as s; print(n); print(s)"
    n, line = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    return int(n), line


def _written_apart(directory: Path, requests: int, per_session: int) -> tuple[int, int, int]:
    """``write_recording`` in a child process: a process started later would otherwise inherit this
    one's peak RSS (Linux keeps the high-water mark across fork and exec) and report it as its own."""
    out = subprocess.run([sys.executable, __file__, "--write", str(directory), str(requests), str(per_session)],
                         capture_output=True, text=True, check=True)
    written, indented, bodies = (int(n) for n in out.stdout.split())
    return written, indented, bodies


def _mib(rss: float | None) -> str:
    return f"{rss:.0f}" if rss is not None else "?"


def main() -> int:
    if sys.argv[1:2] == ["--write"]:
        Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
        print(*write_recording(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--shapes", default="one,many")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-inspect", action="store_true", help="only the replay's figures (and the recording's)")
    opts = parser.parse_args()
    print("| shape | requests | MiB on disk | B/request (indented before) | bodies MiB | inspect s | inspect MiB "
          "| again s | again MiB | --json again s | --json MiB | first request s | RSS MiB then | all prepared s "
          "| RSS MiB then | remembered: first request s | RSS MiB then | all prepared s | RSS MiB then "
          "| run again: first request s | RSS MiB then | all prepared s | RSS MiB then |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
          "|---:|---:|---:|---:|")
    nan = float("nan")
    skipped = (nan, nan, 0)
    not_run = (nan, None, nan, None)
    for shape in opts.shapes.split(","):
        for size in (int(s) for s in opts.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="scale-") as tmp, \
                    tempfile.TemporaryDirectory(prefix="scale-cache-") as cache:
                os.environ["REPLAY_CACHE_DIR"] = cache  # (empty for each size: the first inspect fills it)
                directory = Path(tmp)
                written, indented, bodies = _written_apart(directory, size, size if shape == "one" else 100)
                inspect, again, as_json = ((skipped,) * 3 if opts.skip_inspect else
                                           (measured([REPLAY, "inspect", *flags, tmp], opts.timeout)
                                            for flags in ([], [], ["--json"])))
                if opts.skip_run:
                    cold = warm = rerun = not_run
                else:
                    cold = first_request(directory, size, opts.timeout, cache=False)
                    warm = first_request(directory, size, opts.timeout)  # (what inspect left; else the run before)
                    rerun = first_request(directory, size, opts.timeout)  # (what the run before read, remembered)
                print(f"| {shape} | {size:,} | {written / 2**20:.0f} | {written / size:.0f} ({indented / size:.0f}) "
                      f"| {bodies / 2**20:.0f} | {inspect[0]:.1f} | {inspect[1]:.0f} | {again[0]:.1f} "
                      f"| {again[1]:.0f} | {as_json[0]:.1f} | {as_json[1]:.0f} "
                      + " ".join(f"| {first:.1f} | {_mib(rss)} | {ready:.1f} | {_mib(rss_ready)}"
                                 for first, rss, ready, rss_ready in (cold, warm, rerun)) + " |", flush=True)
                if inspect[2] or again[2] or as_json[2]:
                    print(f"  (exit codes: inspect {inspect[2]}, again {again[2]}, --json {as_json[2]})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
