"""The equivalence cases, and the golden outputs of the code before issue 10 (commit 7825853).

    git worktree add /tmp/base 7825853 && (cd /tmp/base && python3 -m venv .venv && .venv/bin/pip install -e '.[test]')
    .venv/bin/python tests/data/equivalence/make_golden.py /tmp/base/.venv/bin/replay

Each case is one run of the real ``replay`` command: its exit code, its stderr lines, and its
stdout (parsed when it is JSON). Paths are written as tokens (``<DATA>`` for this directory,
``<OUT>`` for an import's output directory), so the goldens hold for any checkout.
tests/test_equivalence.py runs the current ``replay`` on the same cases and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent
GOLDEN = DATA / "golden"
BAD = DATA / "bad"
# Dry runs send nothing; the port is one nothing listens on (discard). A fixed URL keeps the
# plan's table widths the same from run to run.
HOST = "http://127.0.0.1:9"
DEMO_SECRETS = {"REPLAY_SECRET_ECB9840E": "demo"}  # recordings/demo-secrets.env
GENERATED_SECRETS = {"REPLAY_SECRET_0A1B2C3D": "hunter2"}  # the «redacted:0a1b2c3d» password of generated/


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # "<DATA>" and "<OUT>" are replaced by paths
    env: dict[str, str] = field(default_factory=dict)
    json_stdout: bool = False
    # The current version's arguments when a later commit changed how the same output is asked for.
    current_args: tuple[str, ...] | None = None
    imports: bool = False  # an import: also inspect what it wrote


def _cases() -> list[Case]:
    cases: list[Case] = []
    for name, recording, secrets in (("recordings", "<DATA>/recordings", DEMO_SECRETS),
                                     ("generated", "<DATA>/generated", GENERATED_SECRETS)):
        cases += [
            Case(f"inspect-json-{name}", ("inspect", "--json", recording), json_stdout=True),
            # 5f0bc38 ("inspect shows the first rows of big tables and counts warnings of a kind (--all for
            # every one)") and 3dc0c3b ("a value's places listed three and counted"): the text report of
            # before is the current one with --all.
            Case(f"inspect-text-{name}", ("inspect", recording), current_args=("inspect", "--all", recording)),
            Case(f"dry-run-{name}", ("run", recording, "--host", HOST, "--dry-run"), env=secrets),
        ]
    # A replay refused up front: a redacted secret nobody supplied.
    cases.append(Case("dry-run-generated-no-secret", ("run", "<DATA>/generated", "--host", HOST, "--dry-run")))
    bad_dirs = sorted(p.name for p in BAD.iterdir() if p.name != "import")
    for name in ["missing", *bad_dirs]:
        cases.append(Case(f"bad-inspect-{name}", ("inspect", f"<DATA>/bad/{name}")))
        cases.append(Case(f"bad-dry-run-{name}", ("run", f"<DATA>/bad/{name}", "--host", HOST, "--dry-run")))
    cases.append(Case("bad-setting-host", ("run", "<DATA>/recordings", "--host", "ftp://x", "--dry-run")))
    cases.append(Case("bad-setting-speed", ("run", "<DATA>/recordings", "--host", HOST, "--speed", "-1", "--dry-run")))
    for name in ["missing.har", *sorted(p.name for p in (BAD / "import").iterdir())]:
        cases.append(Case(f"import-{name}", ("import", f"<DATA>/bad/import/{name}", "-o", "<OUT>/rec"), imports=True))
    return cases


CASES = _cases()


def _normalize(text: str, out: Path, checkout: Path) -> str:
    # <CHECKOUT> (the checkout of the replay that ran) only shows in a traceback
    return text.replace(str(out), "<OUT>").replace(str(DATA), "<DATA>").replace(str(checkout), "<CHECKOUT>")


def _argv(args: tuple[str, ...], out: Path) -> list[str]:
    return [a.replace("<DATA>", str(DATA)).replace("<OUT>", str(out)) for a in args]


def _env(case: Case) -> dict[str, str]:
    # No REPLAY_* setting of the caller's may leak in; the terminal width does not matter (piped output is 160 wide).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLAY_", "BASE_URL"))}
    return {**env, "NO_COLOR": "1", "TERM": "dumb", **case.env}


def _one_run(replay: str, argv: list[str], env: dict[str, str], cwd: Path, out: Path,
             json_stdout: bool) -> dict[str, Any]:
    done = subprocess.run([replay, *argv], capture_output=True, text=True, timeout=90, env=env, cwd=cwd)
    checkout = Path(replay).parents[2]  # CHECKOUT/.venv/bin/replay
    stdout = _normalize(done.stdout, out, checkout)
    result: dict[str, Any] = {"exit": done.returncode, "stderr": _normalize(done.stderr, out, checkout).splitlines()}
    if json_stdout and done.returncode == 0:
        result["stdout"] = json.loads(stdout)
    else:
        result["stdout"] = stdout.splitlines()
    return result


def run_case(replay: str, case: Case, current: bool) -> dict[str, Any]:
    """What ``replay`` does for ``case``, normalized; ``current`` picks the current version's arguments."""
    args = case.current_args if current and case.current_args is not None else case.args
    with tempfile.TemporaryDirectory(prefix="equivalence-") as tmp:
        out = Path(tmp)
        # "argv" is the case's, whichever arguments ran: the golden and the current result must compare equal
        result = {"argv": list(case.args), **_one_run(replay, _argv(args, out), _env(case), out, out,
                                                        case.json_stdout)}
        if case.imports:
            written = sorted(p.name for p in (out / "rec").glob("*.json")) if (out / "rec").is_dir() else []
            result["written"] = written
            if written:
                result["inspect_written"] = _one_run(replay, ["inspect", "--json", str(out / "rec")], _env(case),
                                                     out, out, True)
    return result


def run_all(replay: str, current: bool) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = pool.map(lambda c: run_case(replay, c, current), CASES)
        return dict(zip([c.name for c in CASES], results, strict=True))


def golden_text(result: dict[str, Any]) -> str:
    """A result as its golden file holds it (sorted keys: the order of a JSON object's keys is no difference)."""
    return json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH/TO/OLD/replay", file=sys.stderr)
        return 2
    GOLDEN.mkdir(exist_ok=True)
    for old in GOLDEN.glob("*.json"):
        old.unlink()
    for name, result in run_all(sys.argv[1], current=False).items():
        (GOLDEN / f"{name}.json").write_text(golden_text(result), encoding="utf-8")
    print(f"{len(CASES)} golden files in {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
