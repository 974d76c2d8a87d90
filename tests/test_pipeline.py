"""The pipeline fed plain data, no mitmproxy: filters, keys, redaction, sessions, the journal, files read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.filters import FlowFilter
from recorder.journal import JOURNAL_DIR
from recorder.pipeline import Captured, Pipeline
from recorder.redaction import Redactor
from recorder.sessionizer import build_session
from recorder.sessionkeys import Keyed, KeySpec
from traffic_replay.format import load_recordings, write_session

pytestmark = pytest.mark.timeout(10)


def item(path: str, started: float, agent: str = "alice", headers: list[tuple[str, str]] | None = None,
         body: bytes = b"", response_body: bytes = b'{"ok": true}',
         response_headers: list[tuple[str, str]] | None = None) -> Captured:
    return Captured(("10.0.0.1", agent), started, started + 0.001, started + 0.003, "GET", "http", "shop", 80,
                    path, f"http://shop{path}", "HTTP/1.1", headers or [("User-Agent", agent)], body,
                    "application/json" if body else None, 200, "OK",
                    response_headers or [("Content-Type", "application/json")], response_body, "application/json",
                    2.0)


def test_fed_exchanges_become_sessions_and_the_journal_is_gone(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path)
    written: list[Path] = []
    pipeline.on_written = written.append
    for i, t in enumerate((100.0, 101.0, 102.0)):
        assert pipeline.feed(item(f"/{i}", t, agent="bob" if i == 1 else "alice")) is None
    assert pipeline.counts().open == 2
    pipeline.finish()
    sessions = {s.client.user_agent: s for s in load_recordings(tmp_path)}
    assert [r.path for r in sessions["alice"].requests] == ["/0", "/2"]
    assert sessions["alice"].requests[1].offset_ms == 2000.0
    assert sorted(written) == sorted(tmp_path.glob("*.json")) and pipeline.written == 2 and pipeline.flows == 3
    assert list((tmp_path / JOURNAL_DIR).glob("*.jsonl")) == []


def test_filters_keys_and_redaction_are_applied_in_order(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path)
    pipeline.filter = FlowFilter(exclude=[r"/health"])
    pipeline.redactor = Redactor(b"k" * 32)
    pipeline.key_spec = KeySpec("cookie", "sid")
    assert pipeline.feed(item("/health", 99.0)) == "excluded"
    # Keyed on the cookie as sent (before redaction), two agents with one cookie are one session.
    for t, agent in ((100.0, "a"), (101.0, "b")):
        pipeline.feed(item("/me", t, agent, headers=[("Cookie", "sid=s3cret"), ("Authorization", "Bearer t0k")],
                           body=b'{"password": "pw"}'))
    pipeline.feed(item("/page", 102.0, "c"), Keyed(("page", "p1")))  # a caller that knows the session
    pipeline.finish()
    assert pipeline.skips == {"excluded": 1}
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("*.json"))
    assert b"s3cret" not in on_disk and b"t0k" not in on_disk and b'"pw"' not in on_disk
    assert sorted(len(s.requests) for s in load_recordings(tmp_path)) == [1, 2]


def test_discard_keeps_nothing(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path)
    pipeline.feed(item("/a", 100.0))
    pipeline.discard()
    assert list(tmp_path.glob("*.json")) == [] and list((tmp_path / JOURNAL_DIR).glob("*.jsonl")) == []


def test_a_session_written_from_the_journal_is_the_file_write_session_writes(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path / "rec")
    (tmp_path / "rec").mkdir()
    fed = [item("/b?q=1", 100.5, body=b'{"n": 2}'), item("/a", 100.0)]  # finished out of start order
    exchanges = [pipeline.exchange(x) for x in fed]
    for x in fed:
        pipeline.feed(x)
    (held,) = [s.exchanges for s in pipeline.sessionizer._open.values()]
    assert all(h.exchange is None for h in held)  # both read back from the journal
    session_id = next(iter(pipeline.sessionizer._open.values())).id
    pipeline.finish()
    (tmp_path / "model").mkdir()
    expected = write_session(build_session(("10.0.0.1", "alice"), exchanges, session_id), tmp_path / "model")
    assert (tmp_path / "rec" / f"{session_id}.json").read_bytes() == expected.read_bytes()
