"""Issue 10's equivalence: the rewritten loader, detector and preparation give what the code before gave.

The same inputs (the bundled recordings, a generated recording, broken session files and
HARs under tests/data/equivalence/) go through the real ``replay`` command, and what it
prints is compared with what the code of commit 7825853 printed (the goldens, written by
tests/data/equivalence/make_golden.py): ``inspect --json`` (sessions, endpoints,
correlations, warnings, secrets), the text ``inspect``, ``run --dry-run`` (the prepared
steps: what would be sent where, with which live values), and for bad input the exit code
and the ``error:`` lines.

Differences a later commit made on purpose are normalized here, each naming its commit;
anything else fails.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

_SPEC = importlib.util.spec_from_file_location("equivalence_cases",
                                               Path(__file__).parent / "data" / "equivalence" / "make_golden.py")
assert _SPEC is not None and _SPEC.loader is not None
cases = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = cases
_SPEC.loader.exec_module(cases)

REPLAY = str(Path(sys.executable).with_name("replay"))


def _golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((cases.GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


@cache
def current() -> dict[str, dict[str, Any]]:
    """Every case run once by the current ``replay`` (in parallel: each is a process of its own)."""
    results: dict[str, dict[str, Any]] = cases.run_all(REPLAY, current=True)
    return results


# c5140ed "Session format as msgspec structs (the one source of its schema, validation and errors)":
# the words after a session file's error location are msgspec's now, not pydantic's (its own test
# asserts "field 'requests.3.port': Expected `int` >= 1"), and msgspec stops at a file's first error,
# so pydantic's count of further errors in the same file ("(and 2 more)") is gone. Kept exact: the
# exit code, one line per bad file, the file, the location ("field 'requests.0.method'", a missing or
# unknown field's own name included) and the kind ("not valid JSON"); the wording is set aside.
_SESSION_ERROR = re.compile(r"^(error: <DATA>/\S+\.json: )(field '[^']*': |not valid JSON: )?(.*?)"
                            r"( \(and \d+ more\))?$")
# 7690f14 "replay import FILE.har streams the HAR with ijson": a broken HAR's JSON error is ijson's.
_HAR_JSON_ERROR = re.compile(r"^(error: <DATA>/\S+: not a HAR file: not valid JSON) \(.*\)$")


def _normalized(result: dict[str, Any]) -> dict[str, Any]:
    def line(text: str) -> str:
        if (har := _HAR_JSON_ERROR.match(text)) is not None:
            return har.group(1) + " (…)"
        if (session := _SESSION_ERROR.match(text)) is not None:
            return session.group(1) + (session.group(2) or "") + "…"
        return text

    return {**_without_skipped(result), "stderr": [line(t) for t in result["stderr"]]}


def _without_skipped(found: Any) -> Any:
    """cd529d2 "--skip-bad": ``inspect --json`` names the session files it skipped as bad, an empty
    list when it skipped none (strict, the default, skips none: it refuses them)."""
    if isinstance(found, dict):
        return {k: _without_skipped(v) for k, v in found.items() if not (k == "skipped_files" and v == [])}
    return [_without_skipped(v) for v in found] if isinstance(found, list) else found


# 1f84062 "a HAR entry whose method no session file may hold is skipped with its reason": before,
# a method with a space ("G ET") crashed the import with pydantic's traceback (exit 1, nothing
# written). Now it and a port past 65535 are skipped with their reasons, and the rest is written.
def _check_odd_entries(golden: dict[str, Any], now: dict[str, Any]) -> None:
    assert golden["exit"] == 1 and golden["stderr"][0] == "Traceback (most recent call last):", golden
    assert "String should match pattern" in golden["stderr"][-2] and golden["written"] == []
    assert now["exit"] == 0, now
    assert now["stderr"][0].startswith("replay: imported 2 of 4 requests from <DATA>/bad/import/odd-entries.har ")
    # Issue 12: an invalid entry is named by its number and what is wrong with it, not by its URL.
    assert [re.sub(r"\s+", " ", t).strip() for t in now["stderr"][1:]] == [
        "skipped 2:", "1 not an HTTP method (e.g. http://127.0.0.1:8000/b)",
        "1 not a valid HAR entry (e.g. entry 3)",
        'entry 3: request.url "http://127.0.0.1:99999/c" is not a valid URL (port out of range 0-65535)'], now["stderr"]
    report = now["inspect_written"]["stdout"]
    assert [(e["method"], e["name"]) for e in report["endpoints"]] == [("GET", "/a"), ("PROPFIND", "/d")]


# Issue 12 "Bad input": an invalid HAR entry is named by its number and the field at fault ("(e.g. ?)"
# named neither). The rest is what it was: the exit code, the summary, what was written.
def _invalid_entry_named(golden: dict[str, Any], now: dict[str, Any]) -> None:
    assert golden["stderr"][-1] == "       1  not a valid HAR entry  (e.g. ?)", golden
    assert now["stderr"] == [*golden["stderr"][:-1], "       1  not a valid HAR entry  (e.g. entry 1)",
                             "  entry 1: no request"], now
    assert {k: v for k, v in _without_skipped(now).items() if k != "stderr"} == {
        k: v for k, v in golden.items() if k != "stderr"}


# c5140ed: a session file is held to its schema (``replay schema``), as a JSON Schema validator
# holds it: pydantic's lax mode had converted "8000" to a port, 1767225600 to a date, "2.5" to a
# weight and 1.0 to a size; msgspec refuses them, naming the field and the type it expected.
def _refused_as_the_schema_refuses(field: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def check(golden: dict[str, Any], now: dict[str, Any]) -> None:
        assert golden["exit"] == 0 and golden["stderr"] == [], golden
        assert now["exit"] == 2, now
        [line] = now["stderr"]
        assert re.fullmatch(rf"error: <DATA>/bad/[\w-]+/s1\.json: field '{re.escape(field)}': Expected `\w+`.*",
                            line), line
    return check


# c5140ed: msgspec reports the first problem it meets while decoding, and an unknown key comes
# before the required fields that are missing at the object's end: {"hello": "world"} is now
# refused for "hello" rather than for "id". Still one line, naming the file and a field.
def _first_problem_named(golden: dict[str, Any], now: dict[str, Any]) -> None:
    assert golden["stderr"] == ["error: <DATA>/bad/notes/notes.json: field 'id': Field required (and 4 more)"]
    assert (now["exit"], now["stderr"]) == (
        2, ["error: <DATA>/bad/notes/notes.json: field 'hello': not a field of a session file"]), now


INTENDED: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "import-odd-entries.har": _check_odd_entries,
    "import-entry-without-request.har": _invalid_entry_named,
    **{f"bad-{kind}-notes": _first_problem_named for kind in ("inspect", "dry-run")},
    **{f"bad-{kind}-{case}": _refused_as_the_schema_refuses(field) for kind in ("inspect", "dry-run")
       for case, field in (("wrong-type-port", "requests.0.port"), ("lax-datetime-number", "started_at"),
                           ("lax-weight-string", "weight"), ("lax-size-float", "requests.0.body.size"))},
}


def _diff(golden: str, now: str) -> str:
    return "".join(difflib.unified_diff(golden.splitlines(True), now.splitlines(True),
                                        "before (7825853, golden)", "now", n=2))


@pytest.mark.parametrize("case", [c.name for c in cases.CASES])
def test_the_current_replay_gives_what_the_code_before_issue_10_gave(case: str) -> None:
    golden = _golden(case)
    now = current()[case]
    if case in INTENDED:
        INTENDED[case](golden, now)
        return
    expected, got = cases.golden_text(_normalized(golden)), cases.golden_text(_normalized(now))
    raw = _diff(cases.golden_text(golden), cases.golden_text(now)) if got != expected else ""
    assert got == expected, (f"replay {' '.join(golden['argv'])}: not what it gave before\n{_diff(expected, got)}"
                             f"as printed:\n{raw}")


def test_every_golden_has_its_case_and_every_case_its_golden() -> None:
    assert sorted(p.stem for p in cases.GOLDEN.glob("*.json")) == sorted(c.name for c in cases.CASES)


def test_the_goldens_are_of_real_output() -> None:
    # A golden that compares equal because both sides printed nothing proves nothing.
    goldens = {c.name: _golden(c.name) for c in cases.CASES}
    for name in ("recordings", "generated"):
        for kind in ("inspect-json", "inspect-text", "dry-run"):
            assert goldens[f"{kind}-{name}"]["exit"] == 0, (kind, name)
        report = goldens[f"inspect-json-{name}"]["stdout"]
        assert report["sessions"] and report["correlations"], name
        assert goldens[f"dry-run-{name}"]["stdout"][-1].startswith("dry run: "), name
    assert goldens["inspect-json-generated"]["stdout"]["total_requests"] == 310
    for name, golden in goldens.items():
        if name.startswith("bad-") and golden["exit"] != 0:
            assert golden["stderr"] and all(t.startswith("error: ") for t in golden["stderr"]), name
