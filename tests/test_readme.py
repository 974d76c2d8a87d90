"""The README's settings table lists every setting with its environment variable."""

from __future__ import annotations

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
    command = ("apt-get update && apt-get install -y chromium docker.io debootstrap python3-venv && "
               "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
               ".venv/bin/python -m pytest -m \"not slow\" && .venv/bin/python -m pytest -m slow")
    assert command in readme and command in (REPO_ROOT / ".ci" / "run").read_text()
