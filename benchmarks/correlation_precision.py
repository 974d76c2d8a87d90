"""How precise the correlation detector is: what it finds, what it should not, which source it picks.

    .venv/bin/python benchmarks/correlation_precision.py [--sessions 300] [--seed 9] [--details]

Runs ``traffic_replay.correlation.detect`` on two corpora whose ground truth is known, and
prints one table row per corpus:

- **bundled**: the sample sessions in ``recordings/``, labelled by hand in
  ``benchmarks/correlation_truth.json`` (the labelling choices are explained there);
- **generated**: sessions built by `correlation_corpus.py` with the format models from a seeded RNG. Each creates
  one object by a POST (201, ``Location``, the id in the JSON answer) whose id has one of
  twelve shapes (1, 7, 42, 1001, UUID, ULID, ObjectId, a Relay id, the server-chosen names
  ``untitled.txt``, ``untitled3.txt``, ``Untitled Folder``, a 2-3 letter code), then uses it
  in GET/PATCH/DELETE paths and JSON bodies; logs in for a bearer token (sometimes refreshed)
  and a user id that is sometimes the object's id too; and sends back what must *not* be
  correlated: the page and size the client chose and the server echoed, the username the
  client typed, constants (``true``, ``"en"``, a quantity of 1). The generator knows the truth.

Ground truth is a map (session, value, use step) -> source step, 0-based. A correlation is
*found* when the detector lists the value with a use, *false* when it lists a value the truth
does not have, *missed* when it lists none of a value the truth has. Per use (value, step):
found, false (a step where the truth sends no such value) or missed; for the found ones the
source the replay would read it from live (as the replayer does: of the value's sources
before the use, the latest) is right when it is the step the truth names. "src listed" counts
the found uses whose true source is at least among the detector's sources before the use.

Also prints the detector's time per 1,000 requests. Not a test; no pass or fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, unquote_plus

import orjson
from correlation_corpus import SHAPES, Case, Key, generated

from traffic_replay.correlation import Correlation, detect
from traffic_replay.format import load_recordings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

def check(case: Case) -> None:
    """The truth names real places: the value is in the use's request and in the source's response."""
    requests = case.session.requests
    for (value, step), source in case.truth.items():
        forms = (value, quote(value), quote(value, safe="/"))
        sent = requests[step]
        text = sent.path + "".join(v for _, v in sent.headers) + (sent.body.data if sent.body else "")
        answer = requests[source].response
        offered = "" if answer is None else "".join(v for _, v in answer.headers) + (answer.body.data if answer.body
                                                                                       else "")
        if not (source < step and any(f in text for f in forms) and any(f in offered for f in forms)):
            sys.exit(f"bad ground truth: {case.session.name}: {value!r} at step {step} from step {source}")


# --- scoring -------------------------------------------------------------------------------


@dataclass
class Score:
    sessions: int = 0
    requests: int = 0
    expected: int = 0
    found: int = 0
    false: int = 0
    missed: int = 0
    uses_expected: int = 0
    uses_found: int = 0
    uses_false: int = 0
    uses_missed: int = 0
    source_right: int = 0
    source_listed: int = 0
    seconds: float = 0.0
    false_values: list[tuple[str, str, str]] = field(default_factory=list)  # (session, value, why)
    missed_values: list[tuple[str, str, str]] = field(default_factory=list)  # (session, value, role)
    wrong_sources: list[tuple[str, str, int, int, str]] = field(default_factory=list)
    # Per expected value: (role, found, uses expected, uses found, uses with the right source)
    values: list[tuple[str, bool, int, int, int]] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("sessions", "requests", "expected", "found", "false", "missed", "uses_expected", "uses_found",
                     "uses_false", "uses_missed", "source_right", "source_listed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.false_values += other.false_values
        self.missed_values += other.missed_values
        self.wrong_sources += other.wrong_sources
        self.values += other.values


def detected_uses(correlations: list[Correlation], canonical: Callable[[str], str],
                  ) -> tuple[dict[Key, set[int | None]], dict[Key, set[int]]]:
    """Per (value, use step): the source the replay reads it from, and every source listed before it.

    A correlation's variable is extracted at each of its sources and the latest extraction
    before a use is what the use sends (replayer/prepared.py, plan.py). A detector that splits
    one value into several correlations (one source each) gives a use one source per
    correlation that claims it; a use claimed with different sources is counted wrong.
    """
    effective: dict[Key, set[int | None]] = {}
    listed: dict[Key, set[int]] = {}
    for c in correlations:
        for use in c.uses:
            before = [s.step for s in c.sources if s.step < use.step]
            key = (canonical(c.value), use.step)
            effective.setdefault(key, set()).add(max(before) if before else None)
            listed.setdefault(key, set()).update(before)
    return effective, listed


def score(case: Case) -> Score:
    started = time.perf_counter()
    correlations = detect(case.session)
    elapsed = time.perf_counter() - started
    expected_values = {value for value, _ in case.truth}

    def canonical(value: str) -> str:
        # The same value as the truth's, URL-encoded (a Location part): carried alike.
        if value not in expected_values:
            for decoded in (unquote(value), unquote_plus(value)):
                if decoded in expected_values:
                    return decoded
        return value

    effective, listed = detected_uses(correlations, canonical)
    s = Score(sessions=1, requests=len(case.session.requests), seconds=elapsed)
    name = case.session.name
    found_values = {value for value, _ in effective}
    s.expected = len(expected_values)
    s.found = len(expected_values & found_values)
    s.false = len(found_values - expected_values)
    s.missed = len(expected_values - found_values)
    s.false_values += [(name, v, case.negatives.get(v, "not in the truth"))
                       for v in sorted(found_values - expected_values)]
    s.missed_values += [(name, v, case.roles.get(v, "")) for v in sorted(expected_values - found_values)]
    s.uses_expected = len(case.truth)
    s.uses_found = len(case.truth.keys() & effective.keys())
    s.uses_missed = s.uses_expected - s.uses_found
    s.uses_false = len(effective.keys() - case.truth.keys())
    tally: dict[str, list[int]] = {v: [0, 0, 0] for v in expected_values}
    for key, source in case.truth.items():
        tally[key[0]][0] += 1
        if key not in effective:
            continue
        tally[key[0]][1] += 1
        if effective[key] == {source}:
            s.source_right += 1
            tally[key[0]][2] += 1
        else:
            got = max((x for x in effective[key] if x is not None), default=-1)
            s.wrong_sources.append((name, key[0], key[1], source, f"read from step {got}" if got >= 0 else "no source"))
        if source in listed[key]:
            s.source_listed += 1
    s.values += [(case.roles.get(v, ""), v in found_values, n, found, right) for v, (n, found, right) in tally.items()]
    return s


def per_kilo(score: Score) -> float:
    return score.seconds * 1000 / score.requests * 1000 if score.requests else 0.0


def timed(cases: list[Case], repeat: int) -> float:
    """Best of ``repeat`` passes of detect() over ``cases`` (each pass at least 5,000 requests): ms per 1,000."""
    requests = sum(len(c.session.requests) for c in cases)
    rounds = max(1, -(-5000 // requests))
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(rounds):
            for case in cases:
                detect(case.session)
        best = min(best, time.perf_counter() - started)
    return best / (rounds * requests) * 1_000_000


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


COLUMNS = ("corpus", "sessions", "requests", "expected", "found", "false", "missed", "precision", "recall",
           "uses exp", "found", "false", "missed", "src right", "src listed", "ms/1k req")


def row(label: str, s: Score, ms: float | None) -> tuple[str, ...]:
    return (label, str(s.sessions), str(s.requests), str(s.expected), str(s.found), str(s.false), str(s.missed),
            pct(s.found, s.found + s.false), pct(s.found, s.expected), str(s.uses_expected), str(s.uses_found),
            str(s.uses_false), str(s.uses_missed), f"{s.source_right} ({pct(s.source_right, s.uses_found)})",
            f"{s.source_listed} ({pct(s.source_listed, s.uses_found)})", "-" if ms is None else f"{ms:.1f}")


def markdown(columns: Iterable[str], rows: list[tuple[str, ...]]) -> str:
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- corpus 1: the bundled recordings, labelled by hand ------------------------------------


def bundled(recordings: Path, truth_file: Path) -> list[Case]:
    labels = orjson.loads(truth_file.read_bytes())["sessions"]
    cases: list[Case] = []
    for session in load_recordings(recordings):
        if session.id not in labels:
            sys.exit(f"{truth_file}: no ground truth for session {session.id} ({session.name!r}); label it first")
        labelled = labels[session.id]["correlations"]
        truth = {(c["value"], use): source for c in labelled for use, source in c["uses"]}
        cases.append(Case(session, truth, "bundled", roles={c["value"]: c["role"] for c in labelled}))
    return cases


# --- corpus 2: generated sessions -----------------------------------------------------------

# --- report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300, help="generated sessions (default 300)")
    parser.add_argument("--seed", type=int, default=9, help="seed of the generator (default 9)")
    parser.add_argument("--recordings", type=Path, default=ROOT / "recordings")
    parser.add_argument("--truth", type=Path, default=HERE / "correlation_truth.json")
    parser.add_argument("--repeat", type=int, default=5, help="timing passes, best kept (default 5)")
    parser.add_argument("--details", action="store_true", help="list every false, missed and wrong-source value")
    args = parser.parse_args()

    corpora = {"bundled": bundled(args.recordings, args.truth), "generated": generated(args.sessions, args.seed)}
    scores: dict[str, Score] = {}
    by_shape: dict[str, Score] = {}
    for label, cases in corpora.items():
        total = Score()
        for case in cases:
            check(case)
            s = score(case)
            total.add(s)
            if label == "generated":
                by_shape.setdefault(case.tag, Score()).add(s)
        scores[label] = total
    timing = {label: timed(cases, args.repeat) for label, cases in corpora.items()}

    print(markdown(COLUMNS, [row(label, s, timing[label]) for label, s in scores.items()]))
    print()
    print("generated, by id shape of the created object (each session also has tokens and a user id):")
    print(markdown(("shape",) + COLUMNS[1:-1], [row(shape, by_shape[shape], None)[:-1] for shape in SHAPES]))
    print()
    print("by what the value is (both corpora):")
    roles: dict[str, list[int]] = {}
    for s in scores.values():
        for role, found, expected, uses_found, right in s.values:
            r = roles.setdefault(role, [0, 0, 0, 0, 0])
            for i, n in enumerate((1, int(found), expected, uses_found, right)):
                r[i] += n
    print(markdown(("value", "expected", "found", "missed", "uses exp", "found", "missed", "src right"),
                   [(role, str(n), str(f), str(n - f), str(u), str(uf), str(u - uf), f"{ok} ({pct(ok, uf)})")
                    for role, (n, f, u, uf, ok) in sorted(roles.items())]))
    for label, s in scores.items():
        why = Counter(reason for _, _, reason in s.false_values)
        if why:
            print(f"\n{label}: false correlations by what they are: "
                  + ", ".join(f"{reason} {n}" for reason, n in why.most_common()))
        if s.wrong_sources:
            print(f"{label}: uses read from the wrong source: {len(s.wrong_sources)}")
        limit = None if args.details or label == "bundled" else 5
        for session, value, reason in s.false_values[:limit]:
            print(f"  false   {session}: {value!r} ({reason})")
        for session, value, role in s.missed_values[:limit]:
            print(f"  missed  {session}: {value!r} ({role})")
        for session, value, step, source, got in s.wrong_sources[:limit]:
            print(f"  source  {session}: {value!r} at step {step}: truth step {source}, {got}")
    print(f"\ndetector: {detect.__module__}, {len(corpora['generated'])} generated sessions, seed {args.seed}")


if __name__ == "__main__":
    main()
