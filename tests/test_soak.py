"""A short soak (benchmarks/soak.py, 30 s each): a steady replay and a steady recording hold their memory flat.

Real processes against a local nginx: ``replay run`` in the open model, and ``replay
record`` proxying many short sessions. The slope of RSS against requests handled, after
the warm-up, must stay under the bounds below; the 5-minute figures, and why these
bounds, are in docs/benchmarks.md ("Soak (issue 12)"). nginx and wrk are Debian's; the
benchmark harness installs them with apt-get when they are missing (CI runs as root), so
that this never skips.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from processes import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import soak  # noqa: E402

pytestmark = pytest.mark.timeout(240)  # an apt-get install of nginx or wrk, when missing, included

SECONDS = 30.0
WARMUP = 10.0

REPLAY_BOUND_KIB = 100.0
"""KiB per 1,000 requests: 100 bytes kept per request fails.

Measured: +10.6 over 30 s (6 s warm-up), +5.6 over 5 minutes at 300 requests/s; that is
~1.7 KiB a second whatever the rate (Locust's per-second tables), not per request.
"""
RECORD_BOUND_KIB = 1024.0
"""KiB per 1,000 requests: 1 KiB kept per request (each exchange or session it wrote, kept) fails.

The recorder warms up for its first ~13,000 requests (~4 MiB, then flat: 0 KiB per 1,000
from there to 5 minutes), so a 30 s window at a few hundred requests/s is still inside it:
measured 490-550 between 10 and 30 s. The 5-minute soak holds the tighter figure.
"""


def test_a_steady_replay_holds_its_memory_flat(tmp_path: Path) -> None:
    run = soak.soak_replay(SECONDS, WARMUP, 1.0, 100.0, tmp_path)
    assert run["samples"] >= 25 and run["requests"] > 3000, run  # the load really ran, all along
    assert run["failures"] == 0, run
    assert run["slope_kib_per_1000"] < REPLAY_BOUND_KIB, soak.report(run)


def test_a_steady_recording_of_many_short_sessions_holds_its_memory_flat(tmp_path: Path) -> None:
    run = soak.soak_record(SECONDS, WARMUP, 1.0, 300.0, 1.0, tmp_path)
    assert run["samples"] >= 25 and run["requests"] > 3000, run
    # Many short sessions were opened, closed and written, and nothing answered was lost.
    assert run["sessions_written"] > 500, run
    # Every answer wrk counted was recorded; a few more were recorded while wrk stopped (one per connection at most).
    assert 0 <= run["requests_recorded"] - run["requests_answered"] <= 4, run
    assert run["slope_kib_per_1000"] < RECORD_BOUND_KIB, soak.report(run)
