"""``replay run --web-login``: Locust's web UI, for real, lets nobody past its login page without the password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from traffic_replay.format import write_session

from factories import make_request, make_session
from processes import REPO_ROOT, free_port, start_process, stop_process

pytestmark = pytest.mark.timeout(60)

PASSWORD = "correct horse battery staple"


def _recordings(directory: Path) -> Path:
    directory.mkdir()
    write_session(make_session([make_request("/items")], id="one", name="one"), directory)
    return directory


@pytest.fixture
def web_ui(demo_target: str, tmp_path: Path) -> Iterator[str]:
    """A ``replay run`` with its web UI (no run started) behind the login page: its base URL."""
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "run", str(_recordings(tmp_path / "r")),
                             "--host", demo_target, "--no-check", "--web-port", str(port), "--web-login",
                             "--web-user", "ops"],
                            r"Starting web interface at", timeout=30, merge_stderr=True,
                            env={"REPLAY_WEB_PASSWORD": PASSWORD})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


PAGES = ["/", "/stats/requests", "/sessions", "/sessions/csv", "/swarm"]


def _refused(client: httpx.Client, path: str) -> bool:
    response = client.post(path) if path == "/swarm" else client.get(path)
    return response.status_code == 302 and response.headers["location"].startswith("/login")


def test_a_stranger_or_a_wrong_password_gets_the_login_page_only(web_ui: str) -> None:
    with httpx.Client(base_url=web_ui, follow_redirects=False, timeout=10) as client:
        assert [path for path in PAGES if not _refused(client, path)] == []
        assert client.get("/login").status_code == 200  # the page itself is open
    for user, password in [("ops", "wrong"), ("admin", PASSWORD), ("ops", ""), ("ops", PASSWORD + "x")]:
        with httpx.Client(base_url=web_ui, follow_redirects=False, timeout=10) as client:
            response = client.post("/login_submit", data={"username": user, "password": password})
            assert response.status_code == 302 and response.headers["location"].startswith("/login"), user
            assert [path for path in PAGES if not _refused(client, path)] == [], (user, password)


def test_the_operator_gets_in_and_every_page_answers(web_ui: str) -> None:
    with httpx.Client(base_url=web_ui, follow_redirects=False, timeout=10) as client:
        response = client.post("/login_submit", data={"username": "ops", "password": PASSWORD})
        assert response.status_code == 302 and not response.headers["location"].startswith("/login")
        assert client.get("/").status_code == 200
        assert "stats" in client.get("/stats/requests").json()
        assert client.get("/sessions").json() == []  # no run started
        assert client.get("/sessions/csv").text.startswith("Session,")


def test_without_the_password_variable_it_does_not_start(demo_target: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(_recordings(tmp_path / "r")),
                             "--host", demo_target, "--no-check", "--web-port", str(free_port()), "--web-login"],
                            capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: --web-login needs the password in REPLAY_WEB_PASSWORD (a variable, not a flag: flags show in ps)"]


@pytest.mark.parametrize("login", [False, True])
def test_a_web_ui_open_to_every_interface_is_a_warning_that_names_the_login(tmp_path: Path, login: bool) -> None:
    # The port is taken on loopback: the warning, then the refusal; nothing ever listens beyond this machine.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(_recordings(tmp_path / "r")),
                                 "--host", "http://127.0.0.1:9", "--no-check", "--web-host", "0.0.0.0",
                                 "--web-port", str(port), *(["--web-login"] if login else [])],
                                capture_output=True, text=True, timeout=30, cwd=REPO_ROOT,
                                env={**os.environ, "REPLAY_WEB_PASSWORD": PASSWORD})
    assert result.returncode == 2
    warning = ("warning: the Locust web UI listens on all interfaces (0.0.0.0): anyone who can reach this machine "
               "can use it; --web-host 127.0.0.1 keeps it to this machine")
    assert result.stderr.splitlines() == [
        warning if login else warning + ", or --web-login puts it behind a login page",
        f"error: --web-port {port} on 0.0.0.0: address in use"]
