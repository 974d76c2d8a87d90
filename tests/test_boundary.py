"""The two runtimes never meet: core imports neither, recorder never locust, replayer never mitmproxy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

DEMO = REPO_ROOT / "traffic_replay" / "demo"

CORE_MODULES = ["traffic_replay", "traffic_replay.cli", "traffic_replay.format", "traffic_replay.settings",
                "traffic_replay.errors", "traffic_replay.checks", "traffic_replay.summary",
                "traffic_replay.inspection", "traffic_replay.naming", "recorder", "replayer"]


def test_importing_the_core_loads_no_runtime() -> None:
    code = (f"import sys; [__import__(m) for m in {CORE_MODULES!r}];"
            "print(sorted(m for m in ('locust', 'gevent', 'mitmproxy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(("package", "banned"), [
    ("recorder", {"locust", "gevent", "geventhttpclient", "replayer"}),
    ("replayer", {"mitmproxy", "recorder"}),
    ("traffic_replay", {"mitmproxy", "locust", "gevent", "geventhttpclient", "recorder", "replayer"}),
])
def test_packages_do_not_import_the_other_side(package: str, banned: set[str]) -> None:
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        if DEMO in path.parents:
            continue  # the demo target is its own process, a gevent server by design
        assert not (_imported_roots(path) & banned), f"{path} imports {_imported_roots(path) & banned}"
