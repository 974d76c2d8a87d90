"""The README: its settings table lists every setting with its variable; its commands and examples hold."""

from __future__ import annotations

import re

import pytest

from traffic_replay.settings import Settings

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(10)


def test_every_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"| `{name}` | `REPLAY_{name.upper()}`" in readme, name


def test_the_ci_script_runs_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    command = ("apt-get update && apt-get install -y chromium docker.io debootstrap nginx wrk python3-venv && "
               "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
               ".venv/bin/python -m pytest -m \"not slow\" && .venv/bin/python -m pytest -m slow")
    assert command in readme and command in (REPO_ROOT / ".ci" / "run").read_text()


def test_every_threshold_the_readme_shows_parses() -> None:
    from traffic_replay.thresholds import parse_threshold

    text = (REPO_ROOT / "README.md").read_text()
    expressions = re.findall(r"--fail-on '([^']+)'", text)
    assert len(expressions) >= 8
    for expression in expressions:
        parse_threshold(expression)
