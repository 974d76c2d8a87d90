"""The addon's hooks called directly, mitmproxy style (taddons + tflow), files read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from recorder.addon import Recorder
from traffic_replay.format import load_recordings

pytestmark = pytest.mark.timeout(30)


def _flow(path: bytes, agent: str, start: float, body: bytes = b"") -> tflow.HTTPFlow:
    flow = tflow.tflow(resp=True)
    flow.request.path = path
    flow.request.headers["User-Agent"] = agent
    flow.request.content = body
    flow.request.timestamp_start, flow.request.timestamp_end = start, start + 0.001
    flow.response.timestamp_start, flow.response.timestamp_end = start + 0.002, start + 0.003
    return flow


def test_flows_become_one_session_per_client(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        recorder.response(_flow(b"/a", "alice", 100.0))
        recorder.response(_flow(b"/x", "bob", 100.5, body=b'{"q": 1}'))
        recorder.response(_flow(b"/b?page=2", "alice", 101.0))
        recorder.sessionizer.close_all()
    sessions = {s.client.user_agent: s for s in load_recordings(tmp_path)}
    assert [r.path for r in sessions["alice"].requests] == ["/a", "/b?page=2"]
    assert [r.offset_ms for r in sessions["alice"].requests] == [0.0, 1000.0]
    assert sessions["bob"].requests[0].body is not None
    assert sessions["bob"].requests[0].body.to_bytes() == b'{"q": 1}'
    assert sessions["alice"].requests[0].response is not None
    assert sessions["alice"].requests[0].response.status == 200


def test_an_idle_gap_splits_a_client_into_two_sessions(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_idle_gap="2")
        recorder.response(_flow(b"/1", "alice", 100.0))
        recorder.response(_flow(b"/2", "alice", 101.0))
        recorder.response(_flow(b"/3", "alice", 110.0))
        recorder.sessionizer.close_all()
    assert sorted(len(s.requests) for s in load_recordings(tmp_path)) == [1, 2]


def test_response_bodies_are_capped(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_body_cap=4)
        flow = _flow(b"/big", "alice", 100.0)
        assert flow.response is not None
        flow.response.content = b"0123456789"
        recorder.response(flow)
        recorder.sessionizer.close_all()
    body = load_recordings(tmp_path)[0].requests[0].response.body  # type: ignore[union-attr]
    assert body is not None and (body.data, body.size, body.truncated) == ("0123", 10, True)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError, match="not a number"):
            tctx.configure(recorder, replay_idle_gap="soon")
        with pytest.raises(exceptions.OptionsError, match="more than 0"):
            tctx.configure(recorder, replay_idle_gap="0")
        (tmp_path / "file").write_text("")
        with pytest.raises(exceptions.OptionsError, match="cannot create directory"):
            tctx.configure(recorder, replay_dir=str(tmp_path / "file" / "sub"))


def test_websocket_and_failed_flows_are_skipped(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        recorder.response(tflow.twebsocketflow())
        recorder.error(tflow.tflow(err=True))
        recorder.sessionizer.close_all()
    assert recorder.skipped == 2 and recorder.flows == 0
    assert list(tmp_path.iterdir()) == []
