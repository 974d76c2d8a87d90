"""A very long session decoded a piece at a time keeps only its last runs of steps used
(``replayer.steps.Steps``, windowed) and builds a run again when a user reaches it: what it sends
must not change, in order or out of it, and what it holds must stay bounded."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
from test_bystep import _busy_session
from test_loading import _sent
from test_piecewise import PASSWORD, _with_placeholders

from replayer import steps as steps_module
from replayer.loading import prepared_sessions
from replayer.prepared import PreparedSession, prepare_session
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.format import Session, dump_session, file_digest
from traffic_replay.packing import Packed, pack
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings

pytestmark = pytest.mark.timeout(120)


def _packed(tmp_path: Path, session: Session) -> Packed:
    """The session as a replay process receives it, its analysis remembered."""
    (packed,) = pack([session])
    AnalysisCache(tmp_path).analyse(session, file_digest(dump_session(session)))
    return packed


def _prepared(tmp_path: Path, packed: Packed, environ: dict[str, str] | None = None) -> PreparedSession:
    settings = Settings(recordings=Path("rec"), host="http://127.0.0.1:9", cache_dir=tmp_path)
    (prepared,) = prepared_sessions(Workload(settings, [packed], "127.0.0.1:8000", secrets=environ or {}))
    return prepared


def test_a_windowed_session_sends_what_it_sends_built_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps_module, "WINDOWED_FROM", 2_000)
    monkeypatch.setattr(steps_module, "WINDOW", 3)
    session = _with_placeholders(_busy_session(2_345))  # (a secret too: its variable is after the index's)
    environ = {"REPLAY_SECRET_0A1B2C3D": "hunter2"}
    packed = _packed(tmp_path, session)
    prepared = _prepared(tmp_path, packed, environ)
    steps = prepared.steps
    assert steps._runs is not None and steps.complete  # (nothing for the background to build ahead)
    whole = prepare_session(session, 1.0, environ=environ)
    assert whole.steps._runs is None  # decoded whole: never windowed
    sent = _sent(whole)
    assert _sent(prepared) == sent and prepared.initial == whole.initial and "hunter2" in prepared.initial
    assert len(steps._runs) == 3
    # Out of order: runs let go are built again from where their predecessor ended (the gaps).
    again = _sent(PreparedSessionView(prepared, [5, 2_344, 150, 1_234, 99, 100, 0, 1_501, 2_200, 101]))
    assert again == [sent[i] for i in (5, 2_344, 150, 1_234, 99, 100, 0, 1_501, 2_200, 101)]
    assert [s.index for s in steps[-3:]] == [2_343, 2_344, 2_345] and steps[-1] is steps[2_344]
    assert [s.index for s in steps[98:103]] == [99, 100, 101, 102, 103]
    with pytest.raises(IndexError):
        steps[2_345]
    assert len(steps._runs) == 3
    missing = _prepared(tmp_path, packed)  # (no secret given)
    assert missing.missing is not None and PASSWORD in missing.missing


class PreparedSessionView:
    """A prepared session whose steps are some of its own, in the order given (what ``_sent`` walks)."""

    def __init__(self, prepared: PreparedSession, order: list[int]) -> None:
        self.initial = prepared.initial
        self.steps = [prepared.steps[i] for i in order]


def test_what_a_windowed_session_holds_after_its_last_step_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory, measured in-process (tracemalloc): every step built and kept would fail it."""
    monkeypatch.setattr(steps_module, "WINDOWED_FROM", 2_000)
    packed = _packed(tmp_path, _busy_session(20_000))

    def held(windowed: bool) -> int:
        monkeypatch.setattr(steps_module, "WINDOWED_FROM", 2_000 if windowed else 10**9)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            prepared = _prepared(tmp_path, packed)
            assert (prepared.steps._runs is not None) is windowed
            assert sum(1 for step in prepared.steps if step.skip is None) == 20_000
            gc.collect()
            taken = tracemalloc.get_traced_memory()[0] - before
            del prepared
            return taken
        finally:
            tracemalloc.stop()
    monkeypatch.setattr(steps_module, "WINDOW", 20)  # 2,000 steps kept of 20,000
    kept_all, windowed = held(False), held(True)
    assert windowed < kept_all / 5, (windowed, kept_all)
