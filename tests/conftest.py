"""Fixtures shared by the test suite."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import REPO_ROOT, start_process, stop_process

DEMO_READY = r"demo target listening on (http://\S+)"


@pytest.fixture(scope="session", autouse=True)
def _session_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ``XDG_CONFIG_HOME`` for the whole run, set before any fixture (session before module before
    function): recorders started by module-scoped fixtures keep their keys there too, never in ``~/.config``."""
    home = tmp_path_factory.mktemp("session-config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("session-cache")))
        yield home


@pytest.fixture(autouse=True)
def config_home(_session_config_home: Path, tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's own ``XDG_CONFIG_HOME`` (redaction keys live there), inherited by the processes it starts:
    never the real ``~/.config``."""
    home = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's own ``XDG_CACHE_HOME`` (what detection found is remembered there, ``correlation.cache``):
    no test reads another's, nor the real ``~/.cache``."""
    home = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("REPLAY_CACHE_DIR", raising=False)
    monkeypatch.delenv("REPLAY_CACHE", raising=False)
    return home


@pytest.fixture
def demo_target_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The demo target in its own process, and its base URL; stopped after the test."""
    proc, match = start_process(
        [sys.executable, "-m", "traffic_replay.demo", "--port", "0"],
        DEMO_READY,
        timeout=10,
        cwd=REPO_ROOT,
    )
    try:
        yield proc, match.group(1)
    finally:
        stop_process(proc)


@pytest.fixture
def demo_target(demo_target_process: tuple[subprocess.Popen[str], str]) -> str:
    """Base URL of a fresh demo target process, e.g. ``http://127.0.0.1:54321``."""
    return demo_target_process[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test fails the run: CI must never pass by skipping."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped tests fail the suite here: {report.longrepr}"
