"""A master and its workers as separate real processes on 127.0.0.1: the workers hold nothing of their own.

Each worker starts in an empty directory with no ``REPLAY_*`` variable; whatever it
replays, and how, can only have come from the master. Checked at the targets' own logs
and in the master's summary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from traffic_replay.format import Body, Response, load_recordings, load_session, replace, write_session
from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from factories import make_request, make_session
from processes import REPO_ROOT, free_port, start_process, stop_process, target_log

pytestmark = pytest.mark.timeout(120)

BUNDLED = REPO_ROOT / "recordings"


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any REPLAY_* variable, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}, "PYTHONUNBUFFERED": "1", **extra}


def _replay(args: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "traffic_replay.cli", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


class Run:
    """A master with ``replay run --master`` and workers with ``replay run --worker``, each its own process."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.port = free_port()
        self.summary = tmp_path / "summary.json"
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_master(self, recordings: Path, host: str, *flags: str, workers: int = 2, users: int = 4,
                     run_time: str = "6s", env: dict[str, str] | None = None) -> None:
        self.master = _replay(["run", str(recordings), "--host", host, "--master", "--expect-workers", str(workers),
                               "--master-bind-port", str(self.port), "--headless", "-u", str(users), "-r",
                               str(users), "-t", run_time, "--summary-json", str(self.summary), *flags],
                              self.tmp / "master.log", REPO_ROOT, env or _clean_env())

    def start_worker(self) -> subprocess.Popen[bytes]:
        empty = self.tmp / f"worker{len(self.workers)}"
        empty.mkdir()
        worker = _replay(["run", "--worker", "--master-port", str(self.port)], empty / "log.txt", empty,
                         _clean_env())
        self.workers.append(worker)
        return worker

    def wait(self, timeout: float = 60) -> tuple[int, dict[str, Any]]:
        assert self.master is not None
        code = self.master.wait(timeout)
        assert self.summary.is_file(), self.logs()
        return code, orjson.loads(self.summary.read_bytes())

    def logs(self) -> str:
        parts = [(self.tmp / "master.log").read_text()[-4000:]]
        parts += [(self.tmp / f"worker{i}" / "log.txt").read_text()[-2000:] for i in range(len(self.workers))]
        return "\n----\n".join(parts)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.master] if self.master else [])]:
            stop_process(proc)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    try:
        yield r
    finally:
        r.stop()


def test_two_workers_in_empty_directories_replay_the_masters_recordings(run: Run, demo_target: str) -> None:
    # The demo password is supplied to the master only: the workers get it with the payload.
    run.start_master(BUNDLED, demo_target, "--speed", "0", "--no-check",
                     env=_clean_env(**read_env_file(BUNDLED / DEMO_SECRETS)))
    run.start_worker()
    run.start_worker()
    code, summary = run.wait()
    assert code == 0, run.logs()
    assert summary["total"]["failures"] == 0 and summary["failures"] == [], summary["failures"]
    workers = summary["workers"]
    assert workers["took_part"] == 2 and workers["lost"] == 0
    assert len(workers["requests"]) == 2 and all(n > 0 for n in workers["requests"]), workers
    seen = target_log(demo_target)
    # The target's own count: every request the workers sent arrived, and the master counted them all
    # (but those the end of the run cut short: at most one per user).
    assert sum(workers["requests"]) == summary["total"]["requests"]
    assert 0 <= len(seen) - summary["total"]["requests"] <= 4, (len(seen), summary["total"]["requests"])
    recorded = {(r.method, r.path) for s in load_recordings(BUNDLED) if s.name != "sell an item" for r in s.requests}
    assert recorded <= {(e["method"], e["path"]) for e in seen}
    # The logins worked (the secret arrived) and the selling journey carried its live ids over.
    assert {e["status"] for e in seen if e["path"] == "/account"} == {200}
    assert {e["status"] for e in seen if e["path"].startswith("/api/listings/")} == {200}


def _stalling_server() -> socket.socket:
    """Accepts connections (the kernel does) and never answers."""
    return socket.create_server(("127.0.0.1", 0), backlog=64)


def _settings_recordings(directory: Path) -> None:
    """A session whose replay shows, at the targets, the speed, the host map, the rules and the timeout used."""
    # With correlation off, the selling journey's CSRF token goes out as recorded: the target refuses it.
    sell = next(p for p in BUNDLED.glob("*.json") if load_session(p).name == "sell an item")
    shutil.copy(sell, directory)
    main = load_session(sell).requests[0]  # the probe's requests go to the same recorded host: --host
    api = make_request("/api/items?q=Item", host=main.host, port=main.port)
    recorded_items = Response(status=200, duration_ms=2.0, headers=[("Content-Type", "application/json")],
                              body=Body.from_bytes(b'{"items": [{"id": 1, "name": "Item 77"}], "page": 1}',
                                                   "application/json"))
    requests = [
        replace(api, response=recorded_items),
        # the rule replaces 77 with the live item number
        make_request("/items?label=77", host=main.host, port=main.port, offset_ms=3000.0),
        make_request("/items/3", host="cdn.example", port=443, offset_ms=6000.0),  # mapped to a second target
        make_request("/slow", host="slow.example", port=443, offset_ms=9000.0),  # mapped to a server that stalls
    ]
    write_session(make_session(requests, id="probe", name="settings probe"), directory)


RULES = '''
[[rule]]
name = "item number"
regex = "Item (\\\\d+)"
from_path = "^/api/items"
'''


@contextmanager
def _second_target() -> Iterator[str]:
    proc, match = start_process([sys.executable, "-m", "traffic_replay.demo", "--port", "0"],
                                r"demo target listening on (http://\S+)", timeout=10)
    try:
        yield match.group(1)
    finally:
        stop_process(proc)


def test_settings_given_only_to_the_master_are_the_ones_the_workers_use(run: Run, demo_target: str,
                                                                       tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    _settings_recordings(recordings)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    staller = _stalling_server()
    stall_url = f"http://127.0.0.1:{staller.getsockname()[1]}"
    with _second_target() as cdn:
        started = time.monotonic()
        run.start_master(recordings, demo_target, "--speed", "0", "--rules", str(rules),
                         "--map-host", f"cdn.example:443={cdn}", "--map-host", f"slow.example={stall_url}",
                         "--timeout", "0.5", "--no-check", run_time="6s",
                         env=_clean_env(**read_env_file(BUNDLED / DEMO_SECRETS)))
        run.start_worker()
        run.start_worker()
        code, summary = run.wait()
        cdn_seen = target_log(cdn)
    staller.close()
    assert time.monotonic() - started < 40, "the run ended on time"
    assert code == 1, run.logs()  # the timeouts are failures
    assert summary["workers"]["took_part"] == 2
    seen = target_log(demo_target)
    labels = [e["path"] for e in seen if e["path"].startswith("/items?label=")]
    # --rules: the live item number ("Item 1" is the first item the target lists), not the recorded 77.
    assert labels and set(labels) == {"/items?label=1"}, set(labels)
    # --speed 0: the 9 s of recorded think time per session went; many sessions were replayed.
    assert len(labels) >= 10, len(labels)
    # --map-host: the recorded CDN host's request reached the second target.
    assert [e["path"] for e in cdn_seen] and {e["path"] for e in cdn_seen} == {"/items/3"}
    # --timeout 0.5: the stalled request failed as a timeout instead of hanging for the default 60 s.
    slow = [f for f in summary["failures"] if f["name"] == "/slow"]
    assert slow and slow[0]["occurrences"] >= 5 and "timed out" in slow[0]["error"].lower(), slow
    assert {f["name"] for f in summary["failures"]} == {"/slow"}, "correlation on: the sign-ins went through"
    assert {e["status"] for e in seen if e["path"] == "/signin" and e["method"] == "POST"} == {302}


def test_no_correlate_given_only_to_the_master_reaches_the_workers(run: Run, demo_target: str,
                                                                   tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copy(next(p for p in BUNDLED.glob("*.json") if load_session(p).name == "sell an item"), recordings)
    run.start_master(recordings, demo_target, "--speed", "0", "--no-correlate", "--no-check", run_time="3s",
                     env=_clean_env(**read_env_file(BUNDLED / DEMO_SECRETS)))
    run.start_worker()
    run.start_worker()
    code, summary = run.wait()
    assert code == 1 and summary["workers"]["took_part"] == 2, run.logs()
    # The recorded CSRF token was sent verbatim, by both workers, and refused.
    assert {e["status"] for e in target_log(demo_target) if e["path"] == "/signin" and e["method"] == "POST"} == {403}
    assert all(n > 0 for n in summary["workers"]["requests"])


def test_a_late_worker_joins_and_a_killed_worker_does_not_stop_the_run(run: Run, demo_target: str) -> None:
    started = time.monotonic()
    run.start_master(BUNDLED, demo_target, "--speed", "0", "--no-check", workers=1, users=4, run_time="15s",
                     env=_clean_env(**read_env_file(BUNDLED / DEMO_SECRETS)))
    first = run.start_worker()
    time.sleep(5)
    run.start_worker()  # 5 s after the master began: it gets the payload and its share of the users
    time.sleep(4)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    code, summary = run.wait()
    took = time.monotonic() - started
    assert 15 <= took < 35, f"the run ended on time ({took:.0f} s)"
    assert code == 0, run.logs()
    workers = summary["workers"]
    assert (workers["took_part"], workers["lost"]) == (2, 1), workers
    assert all(n > 0 for n in workers["requests"]), workers
    assert summary["total"]["failures"] == 0, summary["failures"]
    assert run.workers[1].wait(30) == 0, "the late worker was told to quit at the end, and did"
    # Locust saw the heartbeats stop; the master said once which worker was lost, and the summary says so.
    log = (run.tmp / "master.log").read_text()
    lost = re.findall(r"worker (\S+) was lost", log)
    assert len(lost) == 1 and f"Worker {lost[0]} failed to send heartbeat" in log, log[-4000:]
    assert "workers: 2 took part, 1 lost" in log
    # The counts that reached the master agree with each other: by worker, by endpoint, in all.
    total = summary["total"]["requests"]
    assert sum(workers["requests"]) == total == sum(e["requests"] for e in summary["endpoints"]), summary
    # What the killed worker sent after its last report is missing from the summary, never added to it.
    assert total <= len(target_log(demo_target))
    sessions = summary["sessions"]
    assert sessions["completed"] + sessions["failed"] <= sessions["started"], sessions


def test_data_rows_are_never_shared_by_two_users_across_workers(run: Run, demo_target: str, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    requests = [make_request("/items?client=rec-client", offset_ms=i * 10.0) for i in range(3)]
    write_session(make_session(requests, id="poll", name="poll"), recordings)
    rows = tmp_path / "clients.csv"
    rows.write_text("client\n" + "".join(f"client-{i}\n" for i in range(6)))
    run.start_master(recordings, demo_target, "--speed", "0", "--no-check", "--data", str(rows),
                     "--data-map", "client=rec-client", users=6, run_time="4s")
    run.start_worker()
    run.start_worker()
    code, summary = run.wait()
    assert code == 0, run.logs()
    assert summary["workers"]["took_part"] == 2 and all(n > 0 for n in summary["workers"]["requests"])
    clients = {e["path"].rsplit("=", 1)[1] for e in target_log(demo_target)}
    # Six users over two workers, six rows: each row by exactly one user (two sharing would leave one unused).
    assert clients == {f"client-{i}" for i in range(6)}


def test_processes_uses_the_same_path_on_one_machine(demo_target: str, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(BUNDLED), "--host", demo_target,
                             "--processes", "2", "--master-bind-port", str(free_port()), "--headless", "-u", "4",
                             "-r", "4", "-t", "4s", "--speed", "0", "--no-check", "--summary-json", str(summary_file)],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                            env=_clean_env(**read_env_file(BUNDLED / DEMO_SECRETS)))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["workers"]["took_part"] == 2 and all(n > 0 for n in summary["workers"]["requests"])
    assert 0 <= len(target_log(demo_target)) - summary["total"]["requests"] <= 4
    assert summary["total"]["failures"] == 0


def _one_request_sessions(directory: Path, count: int, gap_s: float) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        session = make_session([make_request(f"/items?s={i}")], id=f"s{i}", name=f"s{i}")
        write_session(replace(session, started_at=t0 + timedelta(seconds=gap_s * i)), directory)


def test_the_timeline_replays_each_session_once_per_round_across_workers(run: Run, demo_target: str,
                                                                        tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    # At speed 0.25 one round starts sessions at 0, 0.8, 1.6 and 2.4 s, and the next round at 6.4 s.
    _one_request_sessions(recordings, 4, 0.2)
    run.start_master(recordings, demo_target, "--timeline", "--speed", "0.25", "--no-check", "-r", "100", users=4,
                     run_time="4s")
    run.start_worker()
    run.start_worker()
    code, summary = run.wait()
    assert code == 0, run.logs()
    assert summary["workers"]["took_part"] == 2
    sent = Counter(e["path"] for e in target_log(demo_target))
    # Four users over two workers share the four sessions out: each once, none twice, none left out.
    assert sent == {f"/items?s={i}": 1 for i in range(4)}, sent


def test_the_session_rate_is_for_the_whole_run_however_many_workers(run: Run, demo_target: str,
                                                                   tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    _one_request_sessions(recordings, 1, 0)
    run.start_master(recordings, demo_target, "--session-rate", "20", "--no-check", users=4, run_time="4s")
    run.start_worker()
    run.start_worker()
    code, summary = run.wait()
    assert code == 0, run.logs()
    assert summary["workers"]["took_part"] == 2 and all(n > 0 for n in summary["workers"]["requests"])
    rate = summary["sessions"]["started"] / summary["duration_s"]
    assert 14 < rate < 26, rate  # 20/s in all; twice that if each worker took the rate for itself
