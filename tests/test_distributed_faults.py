"""Distributed faults, with real processes on 127.0.0.1: the master restarted or gone, a worker of another version.

A worker that cannot work for its master stops within a bounded time, with one ``error:``
line and a non-zero exit code, never a traceback and never a hang; the master says so too
where it can. A master never hangs on a worker that left, and never mistakes one of its own
workers (between two runs of the web UI) for a stranger. (A worker killed mid-run:
``test_distributed``.)
"""

from __future__ import annotations

import importlib.metadata
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_distributed import _clean_env, _replay

from traffic_replay import __version__
from traffic_replay.format import write_session

from factories import make_request, make_session
from processes import REPO_ROOT, free_port, stop_process, target_log

pytestmark = pytest.mark.timeout(150)

BOUND_S = 20.0
"""The longest a worker may go on after its master is gone: ``MASTER_SILENT_S`` (10 s) and a margin."""


def _recordings(directory: Path, tag: str, path: str = "/items") -> Path:
    """One session of two quick requests to ``path``, each carrying ``tag``: whose recordings a request replays."""
    directory.mkdir()
    requests = [make_request(f"{path}?from={tag}&step={i}", offset_ms=i * 50.0) for i in range(2)]
    write_session(make_session(requests, id=tag, name=tag), directory)
    return directory


class Cluster:
    """Masters and workers on one port, each a process of its own, all stopped at the end."""

    def __init__(self, tmp: Path, host: str) -> None:
        self.tmp = tmp
        self.host = host
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def master(self, name: str, recordings: Path, run_time: str, workers: int = 1) -> subprocess.Popen[bytes]:
        proc = _replay(["run", str(recordings), "--host", self.host, "--master", "--expect-workers", str(workers),
                        "--master-bind-port", str(self.port), "--headless", "-u", "2", "-r", "2", "-t", run_time,
                        "--speed", "0", "--no-check", "--summary-json", str(self.tmp / f"{name}.json")],
                       self.tmp / f"{name}.log", REPO_ROOT, _clean_env())
        self.procs.append(proc)
        return proc

    def worker(self, name: str, code: Path = REPO_ROOT, **env: str) -> subprocess.Popen[bytes]:
        """A worker in an empty directory, running the traffic-replay found at ``code``."""
        empty = self.tmp / name
        empty.mkdir()
        proc = _replay(["run", "--worker", "--master-port", str(self.port)], self.tmp / f"{name}.log", empty,
                       _clean_env(PYTHONPATH=str(code), **env))
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def summary(self, name: str) -> dict[str, Any]:
        summary: dict[str, Any] = orjson.loads((self.tmp / f"{name}.json").read_bytes())
        return summary

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture
def cluster(tmp_path: Path, demo_target: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, demo_target)
    try:
        yield c
    finally:
        c.stop()


def _wait_for_requests(host: str, tag: str, timeout: float = 30, since: int = 0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f"from={tag}" in e["path"] for e in target_log(host)[since:]):
            return
        time.sleep(0.3)
    raise AssertionError(f"no request from the {tag} recordings in {timeout:g} s")


def _one_error_line(log: str) -> str:
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return errors[0]


def _exits_within(proc: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker still runs {seconds:g} s on") from None


def test_a_restarted_master_turns_away_the_old_worker_which_exits_and_counts_for_nothing(
        cluster: Cluster, tmp_path: Path, demo_target: str) -> None:
    first = cluster.master("first", _recordings(tmp_path / "first-recordings", "first"), run_time="120s")
    old = cluster.worker("old")
    _wait_for_requests(demo_target, "first")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed = time.monotonic()
    second_recordings = _recordings(tmp_path / "second-recordings", "second", "/api/items")
    second = cluster.master("second", second_recordings, run_time="4s")
    code = _exits_within(old, BOUND_S)
    assert time.monotonic() - killed < BOUND_S
    assert code == 2, cluster.log("old")[-3000:]
    line = _one_error_line(cluster.log("old"))
    assert f"127.0.0.1:{cluster.port}" in line and "does not know this worker" in line, line
    assert "never joined this master" in cluster.log("second")
    # The new master's run is its own: a worker started again joins it and replays its recordings.
    cluster.worker("new")
    assert second.wait(60) == 0, cluster.log("second")[-3000:]
    summary = cluster.summary("second")
    workers = summary["workers"]
    assert workers == {"took_part": 1, "lost": 0, "requests": [summary["total"]["requests"]]}, workers
    # Nothing the old worker sent after the restart (the first recordings, /items) was counted in this run.
    assert {e["name"] for e in summary["endpoints"]} == {"/api/items"}, summary["endpoints"]


def test_a_worker_started_before_its_master_waits_for_it(cluster: Cluster, tmp_path: Path, demo_target: str) -> None:
    # Compose starts both at once and a master reads its recordings before it listens: a
    # worker's watch on its master (10 s of silence) must not count the time before they meet
    # (Locust's worker connects before anything of ours runs, in ``events.init``).
    worker = cluster.worker("early")
    time.sleep(BOUND_S - 5)
    assert worker.poll() is None, cluster.log("early")[-3000:]
    master = cluster.master("late", _recordings(tmp_path / "recordings", "late"), run_time="3s")
    assert master.wait(60) == 0, cluster.log("late")[-3000:]
    assert cluster.summary("late")["workers"]["took_part"] == 1


def test_a_worker_whose_master_is_gone_stops_on_its_own(cluster: Cluster, tmp_path: Path, demo_target: str) -> None:
    master = cluster.master("master", _recordings(tmp_path / "recordings", "only"), run_time="120s")
    worker = cluster.worker("worker")
    _wait_for_requests(demo_target, "only")
    master.send_signal(signal.SIGKILL)
    master.wait(10)
    killed = time.monotonic()
    code = _exits_within(worker, BOUND_S)
    took = time.monotonic() - killed
    assert 8 <= took < BOUND_S, f"{took:.1f} s: a few lost heartbeats are not the master's death"
    assert code == 2, cluster.log("worker")[-3000:]
    line = _one_error_line(cluster.log("worker"))
    assert f"no word from the master at 127.0.0.1:{cluster.port}" in line, line
    # It stopped its users: the target hears nothing from it any more.
    heard = len(target_log(demo_target))
    time.sleep(1.5)
    assert len(target_log(demo_target)) == heard


def test_a_run_stopped_and_started_again_in_the_web_ui_keeps_its_workers(cluster: Cluster, tmp_path: Path,
                                                                        demo_target: str) -> None:
    # Between two runs a worker leaves Locust's table (client_stopped) and comes back (client_ready):
    # it joined this master, so it is no stranger, whatever it sends in between. Locust's own
    # variable holds it out of the table 3 s, so that its heartbeats arrive meanwhile.
    web_port = free_port()
    master = _replay(["run", str(_recordings(tmp_path / "recordings", "web")), "--host", demo_target, "--master",
                      "--expect-workers", "1", "--master-bind-port", str(cluster.port), "--web-port", str(web_port),
                      "--speed", "0", "--no-check"], tmp_path / "master.log", REPO_ROOT, _clean_env())
    cluster.procs.append(master)
    worker = cluster.worker("worker", LOCUST_WORKER_ADDITIONAL_WAIT_BEFORE_READY_AFTER_STOP="3")
    ui = f"http://127.0.0.1:{web_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "holds the recordings: 1 ready" not in cluster.log("master"):
        time.sleep(0.3)
    with httpx.Client(base_url=ui, timeout=10) as client:
        for _ in range(2):
            heard = len(target_log(demo_target))
            assert client.post("/swarm", data={"user_count": 2, "spawn_rate": 2, "host": demo_target}).is_success
            _wait_for_requests(demo_target, "web", since=heard)
            time.sleep(3)  # a stats report or two, heartbeats
            assert client.post("/stop").is_success
            time.sleep(5)
    assert worker.poll() is None, cluster.log("worker")[-3000:]
    assert "never joined" not in cluster.log("master") and "error:" not in cluster.log("worker")


def test_a_worker_that_leaves_before_the_run_does_not_leave_the_master_waiting_for_ever(
        cluster: Cluster, tmp_path: Path, demo_target: str) -> None:
    master = cluster.master("master", _recordings(tmp_path / "recordings", "only"), run_time="3s", workers=2)
    leaving = cluster.worker("leaving")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "holds the recordings: 1 ready" not in cluster.log("master"):
        time.sleep(0.3)
    leaving.send_signal(signal.SIGTERM)  # Ctrl-C, docker stop: it says "quit" to the master
    assert leaving.wait(20) == 0
    # Locust would stop the master's runner on its last worker's quit, and no one could join it any more.
    cluster.worker("first")
    cluster.worker("second")
    assert master.wait(60) == 0, cluster.log("master")[-3000:]
    assert "left before the run started" in cluster.log("master")
    workers = cluster.summary("master")["workers"]
    assert (workers["took_part"], workers["lost"]) == (2, 0) and all(n > 0 for n in workers["requests"]), workers


def _other_version(tmp_path: Path, version: str) -> Path:
    """A copy of this checkout's code with another ``__version__``: a worker that truly runs another release."""
    code = tmp_path / f"traffic-replay-{version}"
    for package in ("traffic_replay", "replayer", "recorder"):
        shutil.copytree(REPO_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    init = code / "traffic_replay" / "__init__.py"
    text = init.read_text()
    assert f'__version__ = "{__version__}"' in text
    init.write_text(text.replace(f'__version__ = "{__version__}"', f'__version__ = "{version}"'))
    return code


def test_a_worker_of_another_version_is_refused_on_both_sides(cluster: Cluster, tmp_path: Path,
                                                              demo_target: str) -> None:
    master = cluster.master("master", _recordings(tmp_path / "recordings", "only"), run_time="3s")
    other = cluster.worker("other", _other_version(tmp_path, "0.0.9"))
    code = _exits_within(other, BOUND_S)
    assert code == 2, cluster.log("other")[-3000:]
    line = _one_error_line(cluster.log("other"))
    assert f"runs traffic-replay {__version__}, this worker 0.0.9: refused" in line, line
    refusals = [line for line in cluster.log("master").splitlines() if "refused" in line]
    assert len(refusals) == 1 and f"runs traffic-replay 0.0.9, this master {__version__}" in refusals[0], refusals
    assert target_log(demo_target) == [], "the refused worker replayed nothing"
    # The master waits on for a worker it can work with, and runs with it.
    cluster.worker("same")
    assert master.wait(60) == 0, cluster.log("master")[-3000:]
    assert cluster.summary("master")["workers"]["took_part"] == 1


def test_the_version_the_handshake_carries_is_the_installed_release() -> None:
    # Workers and masters compare traffic_replay.__version__: it must move with pyproject's version.
    assert importlib.metadata.version("traffic-replay") == __version__
