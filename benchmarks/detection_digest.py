"""A digest of what the correlation detector finds, to show that a change to it changes no result.

    .venv/bin/python benchmarks/detection_digest.py [DIR ...] [--corpus-seeds 1,2,3] [--dump FILE]

For each recording directory (default: ``recordings/`` and the equivalence test's generated
recording) and for the precision benchmark's generated corpus at each seed, prints the
SHA-256 of every session's ``analyse`` result (correlations with their sources and uses, and
what was rejected and why) and of its ``unsourced_values``, in order. Run it with the
detector before and after a change (two worktrees, two venvs): equal digests, equal results.
``--dump`` writes the results themselves, to ``diff`` when two digests differ.
Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]


def _digest(label: str, sessions: Iterable[object], dump: TextIO | None) -> str:
    from traffic_replay.correlation import analyse, unsourced_values
    from traffic_replay.format import Session, uncollected

    digest = hashlib.sha256()
    count = 0
    with uncollected():
        for session in sessions:
            assert isinstance(session, Session)
            analysis = analyse(session)
            text = (f"{session.id}\n{analysis.correlations!r}\n{analysis.rejected!r}\n"
                    f"{unsourced_values(session, analysis.correlations)!r}\n")
            digest.update(text.encode())
            if dump is not None:
                dump.write(f"== {label} ")
                dump.write(text)
            count += 1
    return f"{digest.hexdigest()[:16]}  {count} sessions  {label}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path,
                        default=[ROOT / "recordings", ROOT / "tests/data/equivalence/generated"])
    parser.add_argument("--corpus-seeds", default="9,1,2")
    parser.add_argument("--corpus-sessions", type=int, default=300)
    parser.add_argument("--dump", type=Path)
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from correlation_corpus import generated

    from traffic_replay.format import load_recordings

    dump = opts.dump.open("w") if opts.dump else None
    try:
        for directory in opts.dirs:
            print(_digest(str(directory), load_recordings(directory), dump), flush=True)
        for seed in (int(s) for s in opts.corpus_seeds.split(",") if s):
            cases = generated(opts.corpus_sessions, seed)
            print(_digest(f"corpus seed {seed}", (case.session for case in cases), dump), flush=True)
    finally:
        if dump is not None:
            dump.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
