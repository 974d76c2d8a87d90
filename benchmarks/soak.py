"""Soak: does a long replay, or a long recording, hold more memory the more requests it has handled?

    .venv/bin/python benchmarks/soak.py [--seconds 300] [--only replay|record] [--json OUT]
    flock /tmp/bench.lock .venv/bin/python benchmarks/soak.py        # the 5-minute figures of docs/benchmarks.md

Two runs of ``--seconds`` each, one after the other, against a local nginx (benchmarks/
harness.py's: 1 worker, access log off) whose stub_status counts the requests it handled:

- **replay**: ``replay run`` in the open model (``--session-rate``, constant arrivals,
  ``--speed 0``), so the request rate is steady whatever the latency: sessions of three
  requests, each a new visitor that gets a cookie, posts JSON and is answered a fresh id
  (nginx's ``$request_id``) that its next request carries in its path (correlation on,
  the default). The Locust process's RSS is sampled (``replay run`` execs into it).
- **record**: ``replay record`` in reverse-proxy mode in front of the same nginx, fed by
  ``wrk`` at a steady rate (a Lua ``delay()`` between requests on each connection) with
  a new visit every four requests (``--session-key header:x-visit``) and a short
  ``--idle-gap``, so that sessions open, go idle, are written out and let go all the run
  long. The recorder's RSS is sampled, and its session files counted at the end.

Each reports the slope of RSS against requests handled, in KiB per 1,000 requests, by
least squares over the samples after the warm-up (``--warmup``, by default a fifth of the
run): allocators, caches and Locust's stats tables (one row per name, and response-time
buckets that fill once) grow at first and then stay; what grows with every request after
that is a leak. tests/test_soak.py runs both for 30 s and holds the slopes under a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO_ROOT))
from harness import (  # noqa: E402
    apt_install,
    ensure_nginx,
    free_port,
    log,
    nginx_requests,
    rss_mib,
    start_nginx,
    stop,
    stub_status_server,
    wait_listening,
)

# Pages answer with a cookie; the JSON API hands out a fresh id per POST and echoes it on GET.
LOCATIONS = """\
        location / {
            default_type text/html;
            add_header Set-Cookie "sid=$request_id; Path=/";
            return 200 "<html><body>items</body></html>\\n";
        }
        location = /api/items {
            default_type application/json;
            return 201 '{"item": {"id": "$request_id", "name": "soak"}}';
        }
        location /api/items/ {
            default_type application/json;
            return 200 '{"item": {"name": "soak"}}';
        }
"""

RECORDED_ID = "5f0c8a1e9b7d4c2fa6e3b1d0c9a8e7f6"
"""The id the recording was answered: the replay sends the live one instead."""

WRK_SCRIPT = r"""
local i = 0
local paths = {"/items?page=2&sort=price", "/api/items/17?fields=name", "/items?page=3", "/api/items/18"}
function request()
  i = i + 1
  local headers = {["User-Agent"] = "soak", ["Accept"] = "*/*", ["X-Visit"] = tostring(math.floor(i / 4))}
  return wrk.format("GET", paths[i %% 4 + 1], headers)
end
function delay()
  return %(delay_ms)d
end
"""


def slope_kib_per_1000(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (requests, RSS MiB) points, in KiB per 1,000 requests."""
    n = len(points)
    if n < 3:
        raise ValueError(f"{n} samples after the warm-up: too few for a slope")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        raise ValueError("no requests were handled after the warm-up")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx * 1024 * 1000


def _write_recording(directory: Path, port: int) -> None:
    from traffic_replay.format import Body, Request, Response, Session, write_session

    def request(offset: float, method: str, path: str, status: int, rtype: str, rbody: bytes,
                body: bytes | None = None, cookie: bool = False) -> Request:
        headers = [("Host", f"127.0.0.1:{port}"), ("User-Agent", "soak"), ("Accept", "*/*")]
        if cookie:
            headers.append(("Cookie", "sid=0123456789abcdef0123456789abcdef"))
        if body is not None:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        return Request(offset_ms=offset, duration_ms=2.0, method=method, scheme="http", host="127.0.0.1", port=port,
                       path=path, headers=headers,
                       body=Body.from_bytes(body, "application/json") if body is not None else None,
                       response=Response(status=status, duration_ms=1.0, headers=[("Content-Type", rtype)],
                                         body=Body.from_bytes(rbody, rtype)))

    created = json.dumps({"item": {"id": RECORDED_ID, "name": "soak"}}).encode()
    for n in range(4):
        requests = [
            request(0.0, "GET", f"/items?page={n}&sort=price", 200, "text/html", b"<html><body>items</body></html>\n"),
            request(100.0, "POST", "/api/items", 201, "application/json", created,
                    body=json.dumps({"name": f"soak {n}", "quantity": n + 1}).encode(), cookie=True),
            request(200.0, "GET", f"/api/items/{RECORDED_ID}?fields=name", 200, "application/json",
                    b'{"item": {"name": "soak"}}', cookie=True),
        ]
        write_session(Session(id=f"soak-{n}", name=f"soak {n}", started_at=datetime(2026, 1, 1, tzinfo=UTC),
                              requests=requests), directory)


def _sample(pid: int, status_port: int, seconds: float, every: float,
            alive: Callable[[], bool]) -> list[tuple[float, float, float]]:
    """(t, requests nginx handled, RSS MiB) every ``every`` s for ``seconds`` s, while ``alive()``."""
    samples = []
    start = time.monotonic()
    while (t := time.monotonic() - start) < seconds and alive():
        rss = rss_mib(pid)
        if rss is None:
            break
        samples.append((t, float(nginx_requests(status_port)), rss))
        time.sleep(max(0.0, every - (time.monotonic() - start - t)))
    return samples


def _figures(kind: str, samples: list[tuple[float, float, float]], warmup: float, **extra: Any) -> dict[str, Any]:
    after = [(requests, rss) for t, requests, rss in samples if t >= warmup]
    handled = samples[-1][1] - samples[0][1] if samples else 0
    duration = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0
    return {"kind": kind, "samples": len(samples), "warmup_s": warmup, "requests": handled,
            "requests_per_s": handled / duration if duration else 0.0,
            "rss_first_mib": samples[0][2] if samples else None,
            "rss_at_warmup_mib": after[0][1] if after else None, "rss_last_mib": samples[-1][2] if samples else None,
            "rss_max_mib": max(s[2] for s in samples) if samples else None,
            "slope_kib_per_1000": slope_kib_per_1000(after), "series": samples, **extra}


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing, as ``ensure_nginx`` does nginx."""
    if found := shutil.which("wrk"):
        return found
    log("wrk is not on PATH: installing it with apt-get (Debian package 'wrk')")
    apt_install("wrk")
    if not (found := shutil.which("wrk")):
        raise RuntimeError("apt-get installed wrk but no wrk binary was found")
    return found


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}


def soak_replay(seconds: float, warmup: float, every: float, session_rate: float, tmp: Path) -> dict[str, Any]:
    """``replay run`` at ``session_rate`` sessions (3 requests each) per second for ``seconds``; RSS sampled."""
    status_port = free_port()
    (tmp / "nginx").mkdir()
    nginx, port = start_nginx(ensure_nginx(), tmp / "nginx", LOCATIONS, stub_status_server(status_port))
    recordings = tmp / "recordings"
    recordings.mkdir()
    _write_recording(recordings, port)
    summary = tmp / "summary.json"
    replay = Path(sys.executable).with_name("replay")
    args = [str(replay), "run", str(recordings), "--host", f"http://127.0.0.1:{port}", "--headless",
            "--session-rate", f"{session_rate:g}", "--speed", "0", "-u", "4", "-r", "4",
            "-t", f"{int(seconds + 15)}s", "--no-check", "--quiet", "--summary-json", str(summary)]
    with (tmp / "replay.log").open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_clean_env(), cwd=tmp,
                                start_new_session=True)
    try:
        _wait_for_requests(status_port, proc, "replay run")
        samples = _sample(proc.pid, status_port, seconds, every, lambda: proc.poll() is None)
        stop(proc)  # SIGTERM: Locust writes its summary on the way out
        failures = json.loads(summary.read_bytes())["total"]["failures"] if summary.is_file() else None
    finally:
        stop(proc, signal.SIGKILL)
        stop(nginx, signal.SIGQUIT)
    return _figures("replay", samples, warmup, session_rate=session_rate, failures=failures)


def soak_record(seconds: float, warmup: float, every: float, rate: float, idle_gap: float,
                tmp: Path) -> dict[str, Any]:
    """``replay record`` proxying ``rate`` requests/s of 4-request visits for ``seconds``; RSS sampled."""
    status_port = free_port()
    (tmp / "nginx").mkdir()
    nginx, port = start_nginx(ensure_nginx(), tmp / "nginx", LOCATIONS, stub_status_server(status_port))
    wrk = ensure_wrk()
    connections = 4
    script = tmp / "visits.lua"
    # Each connection waits this long between its requests: the rate is held, not pushed to the proxy's limit.
    script.write_text(WRK_SCRIPT % {"delay_ms": max(1, round(connections * 1000 / rate))})
    out_dir = tmp / "recorded"
    proxy_port = free_port()
    replay = Path(sys.executable).with_name("replay")
    with (tmp / "record.log").open("wb") as out:
        proc = subprocess.Popen([str(replay), "record", str(out_dir), "--mode", f"reverse:http://127.0.0.1:{port}",
                                 "--listen-port", str(proxy_port), "--session-key", "header:x-visit",
                                 "--idle-gap", f"{idle_gap:g}"],
                                stdout=out, stderr=subprocess.STDOUT, env=_clean_env(), cwd=tmp,
                                start_new_session=True)
    load = None
    try:
        wait_listening(proxy_port, proc, "replay record", timeout=30)
        load = subprocess.Popen([wrk, "-t1", f"-c{connections}", f"-d{int(seconds + 30)}s", "-s", str(script),
                                 f"http://127.0.0.1:{proxy_port}/"], stdout=(tmp / "wrk.txt").open("wb"),
                                start_new_session=True)
        _wait_for_requests(status_port, proc, "replay record")
        samples = _sample(proc.pid, status_port, seconds, every, lambda: proc.poll() is None)
        stop(load, signal.SIGINT)  # wrk prints its totals on SIGINT
        time.sleep(idle_gap + 1)  # the last visits go idle and are written
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
    finally:
        stop(load)
        stop(proc, signal.SIGKILL)
        stop(nginx, signal.SIGQUIT)
    files = list(out_dir.glob("*.json"))
    recorded = sum(len(json.loads(p.read_bytes())["requests"]) for p in files)
    answered = re.search(r"(\d+) requests in", (tmp / "wrk.txt").read_text())
    return _figures("record", samples, warmup, rate=rate, idle_gap_s=idle_gap, sessions_written=len(files),
                    requests_recorded=recorded, requests_answered=int(answered.group(1)) if answered else None)


def _wait_for_requests(status_port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    """Until nginx has handled a first request (start-up is no part of the soak)."""
    deadline = time.monotonic() + timeout
    first = nginx_requests(status_port)
    while nginx_requests(status_port) <= first + 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} sent nothing (exit code {proc.poll()})")
        time.sleep(0.2)


def report(run: dict[str, Any]) -> str:
    return (f"{run['kind']:<7} {run['requests']:>9,.0f} requests at {run['requests_per_s']:>5.0f}/s, "
            f"RSS {run['rss_first_mib']:.1f} -> {run['rss_at_warmup_mib']:.1f} (after {run['warmup_s']:g} s "
            f"warm-up) -> {run['rss_last_mib']:.1f} MiB (max {run['rss_max_mib']:.1f}); "
            f"slope after the warm-up {run['slope_kib_per_1000']:+.1f} KiB per 1,000 requests")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of each run (default 300)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the slope (default: a fifth of the run)")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between RSS samples")
    parser.add_argument("--session-rate", type=float, default=100.0, help="replay: sessions per second (3 requests)")
    parser.add_argument("--rate", type=float, default=300.0, help="record: requests per second through the proxy")
    parser.add_argument("--idle-gap", type=float, default=1.0, help="record: seconds of silence that end a session")
    parser.add_argument("--only", choices=["replay", "record"])
    parser.add_argument("--json", type=Path, help="write every figure and sample here")
    opts = parser.parse_args()
    warmup = opts.warmup if opts.warmup is not None else opts.seconds / 5
    runs = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        if opts.only in (None, "replay"):
            (tmp / "replay").mkdir()
            runs.append(soak_replay(opts.seconds, warmup, opts.every, opts.session_rate, tmp / "replay"))
            log(report(runs[-1]))
        if opts.only in (None, "record"):
            (tmp / "record").mkdir()
            runs.append(soak_record(opts.seconds, warmup, opts.every, opts.rate, opts.idle_gap, tmp / "record"))
            log(report(runs[-1]))
    for run in runs:
        print(report(run))
        if run["kind"] == "record":
            print(f"        {run['sessions_written']:,} sessions written, {run['requests_recorded']:,} requests "
                  f"recorded; wrk had {run['requests_answered']} answers")
        else:
            print(f"        failures: {run['failures']}")
    if opts.json:
        opts.json.write_text(json.dumps({"seconds": opts.seconds, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
