"""The exception tree is whole: every exception class in ``errors.py``, drawn in its docstring with its exit code."""

from __future__ import annotations

import ast
import builtins
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from traffic_replay import errors
from traffic_replay.errors import (
    ConfigError,
    InternalError,
    RecordingsInvalid,
    ReplayError,
    SessionFileError,
    TargetError,
    report_error,
)

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

PACKAGES = ("traffic_replay", "recorder", "replayer")
DEMO = REPO_ROOT / "traffic_replay" / "demo"

# Run in a process of one runtime: imports the modules it is given, prints every exception class they define.
_LIST = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
found, todo = {}, [BaseException]
while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if cls.__module__.split(".")[0] in ("traffic_replay", "recorder", "replayer"):
        found[cls.__qualname__] = {"module": cls.__module__, "base": cls.__bases__[0].__name__,
                                   "exit_code": getattr(cls, "exit_code", None)}
print(json.dumps(found))
"""


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py") if p.name != "__main__.py")


def _defined() -> dict[str, dict[str, object]]:
    """Every exception class our modules define, imported as they run: mitmproxy's side and Locust's apart."""
    gevent_side = [p for p in _sources() if p.is_relative_to(REPO_ROOT / "replayer") or p.is_relative_to(DEMO)]
    asyncio_side = [p for p in _sources() if p not in gevent_side]
    found: dict[str, dict[str, object]] = {}
    for side in (asyncio_side, gevent_side):
        out = subprocess.run([sys.executable, "-c", _LIST, *map(_module, side)], capture_output=True, text=True,
                             check=True, cwd=REPO_ROOT)
        found |= json.loads(out.stdout.strip().splitlines()[-1])
    return found


def _drawn() -> dict[str, tuple[str | None, int]]:
    """The docstring's drawing: each class, its parent (by indentation), its exit code."""
    drawn: dict[str, tuple[str | None, int]] = {}
    parents: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^(\s*[│├└─ ]*)([A-Z]\w+)\s+(\d+)\s", line)
        if m is None:
            continue
        depth, name = len(m.group(1)), m.group(2)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[name] = (parents[-1][1] if parents else None, int(m.group(3)))
        parents.append((depth, name))
    return drawn


def test_every_exception_class_is_in_errors_py_and_drawn_with_its_parent_and_exit_code() -> None:
    defined = _defined()
    assert "ReplayError" in defined  # the walk saw our classes at all
    outside = {name: c["module"] for name, c in defined.items() if c["module"] != "traffic_replay.errors"}
    assert not outside, f"exception classes outside traffic_replay/errors.py: {outside}"
    drawn = _drawn()
    assert set(drawn) == set(defined), f"not drawn: {set(defined) - set(drawn)}; drawn, not defined: " \
                                       f"{set(drawn) - set(defined)}"
    for name, (parent, code) in drawn.items():
        cls = getattr(errors, name)
        assert issubclass(cls, ReplayError), name
        assert (cls.__bases__[0].__name__ if cls is not ReplayError else None) == parent, name
        assert cls.exit_code == code, f"{name}: drawn with {code}, exits {cls.exit_code}"


def _exception_names() -> set[str]:
    return {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)} \
        | {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}


def test_no_exception_class_is_declared_outside_errors_py_even_where_importing_cannot_see_it() -> None:
    # The import walk misses a class made inside a function; the source does not.
    names = _exception_names()
    for path in _sources():
        if path == REPO_ROOT / "traffic_replay" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).split(".")[-1] for b in node.bases}
                assert not bases & names and not any(b.endswith(("Error", "Exception")) for b in bases), \
                    f"{path}:{node.lineno}: class {node.name}({', '.join(sorted(bases))}) belongs in errors.py"


def test_the_exit_codes_without_an_exception_are_the_ones_the_code_uses() -> None:
    from traffic_replay.thresholds import EXIT_CODE

    assert (errors.OK, errors.FAILED_REQUESTS, errors.THRESHOLD_BROKE, errors.INTERRUPTED) == (0, 1, 4, 130)
    assert EXIT_CODE == errors.THRESHOLD_BROKE
    assert (ReplayError.exit_code, ConfigError.exit_code, TargetError.exit_code) == (2, 2, 3)


def test_the_reporter_prints_one_line_each_and_returns_the_exit_code() -> None:
    out = io.StringIO()
    assert report_error(TargetError("http://127.0.0.1:9: connection refused"), out) == 3
    assert out.getvalue() == "error: http://127.0.0.1:9: connection refused\n"


def test_a_reported_line_never_breaks_in_two() -> None:
    out = io.StringIO()
    assert report_error(ConfigError("a\nb\rc\u2028d \udcff"), out) == 2
    assert out.getvalue() == "error: a\\u000ab\\u000dc\\u2028d \\udcff\n"


def test_several_problems_are_one_line_each() -> None:
    out = io.StringIO()
    report_error(RecordingsInvalid([SessionFileError("a.json", "bad"), SessionFileError("b.json", "worse")]), out)
    assert out.getvalue() == "error: a.json: bad\nerror: b.json: worse\n"


def test_a_bug_is_one_line_and_exit_code_1() -> None:
    out = io.StringIO()
    assert report_error(InternalError(KeyError("x")), out) == 1
    assert out.getvalue() == "error: internal error: KeyError('x') (run with --debug for the traceback)\n"
