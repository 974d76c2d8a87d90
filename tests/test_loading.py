"""A process's sessions: a small recording prepared whole before the run, a large one as it is used."""

from __future__ import annotations

import weakref
from datetime import timedelta
from pathlib import Path

import gevent
import msgspec
import pytest
from msgspec.structs import replace

from replayer import loading
from replayer import steps as steps_module
from replayer.loading import PreparedSessions, Replay, prepared_sessions
from replayer.prepared import PreparedSession, prepare_session
from traffic_replay.format import Session
from traffic_replay.packing import Packed, Unpacker, pack
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings

from factories import answered, make_request, make_session

pytestmark = pytest.mark.timeout(30)


def _session(n: int, requests: int, late_s: float = 0.0) -> Session:
    steps = [answered(make_request("/login", "POST", offset_ms=0), f'{{"token": "tok-{n:05d}-abcdef"}}')]
    steps += [make_request(f"/items/{k + 1}", offset_ms=100.0 * (k + 1),
                           headers=[("Authorization", f"Bearer tok-{n:05d}-abcdef")]) for k in range(requests - 1)]
    session = make_session(steps, id=f"s{n}", name=f"visit {n}", weight=n + 1)
    return replace(session, started_at=session.started_at + timedelta(seconds=late_s))


def _counting() -> tuple[list[str], PreparedSessions, list[Session]]:
    prepared: list[str] = []
    recorded = [_session(0, 3), make_session([], id="empty"), _session(1, 5, late_s=2.5), _session(2, 2, late_s=1.0)]
    unpack = Unpacker()

    def prepare(packed: Packed) -> PreparedSession:
        prepared.append(packed.id)
        return prepare_session(unpack(packed), 1.0)
    return prepared, PreparedSessions(pack(recorded), prepare), recorded


def test_a_session_is_prepared_the_first_time_it_is_taken_and_only_then() -> None:
    prepared, sessions, _ = _counting()
    assert len(sessions) == 3 and sessions.pending == 3 and prepared == []  # the empty one is never replayed
    assert sessions.starts == (0.0, 2.5, 1.0) and sessions.cum_weights == (1, 3, 6)
    second = sessions[1]
    assert prepared == ["s1"] and sessions.pending == 2
    assert second.name == "visit 1" and second.start == 2.5 and len(second.steps) == 5
    # Carried over as if prepared up front: the token of its own login.
    assert second.steps[1].patch is not None
    assert sessions[1] is second and prepared == ["s1"]
    assert [s.id for s in sessions] == ["s0", "s1", "s2"] and prepared == ["s1", "s0", "s2"]


def test_big_sessions_first_then_the_rest_between_yields() -> None:
    prepared, sessions, _ = _counting()
    sessions.prepare_now(big_from=4)
    assert prepared == ["s1"]
    yields: list[int] = []
    sessions.prepare_rest(lambda: yields.append(sessions.pending))
    assert prepared == ["s1", "s0", "s2"] and sessions.pending == 0
    assert yields == [2, 1, 1]  # before each session, prepared or not


def _workload(sessions: list[Session]) -> Workload:
    return Workload.of(Settings(recordings=Path("rec"), host="http://127.0.0.1:9"), sessions)


def test_a_small_recording_is_ready_whole_before_the_run() -> None:
    replay = Replay(Settings(recordings=Path("rec")))
    replay.load(_workload([_session(n, 4) for n in range(3)]))
    assert replay.ready.is_set()
    assert isinstance(replay.sessions, PreparedSessions) and replay.sessions.pending == 0


def test_a_large_recording_starts_with_its_big_sessions_and_prepares_the_rest_while_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "EAGER_UP_TO_REQUESTS", 10)
    monkeypatch.setattr(loading, "EAGER_FROM_REQUESTS", 6)
    replay = Replay(Settings(recordings=Path("rec")))
    replay.load(_workload([_session(0, 3), _session(1, 8), _session(2, 4)]))
    sessions = replay.sessions
    assert isinstance(sessions, PreparedSessions)
    assert replay.ready.is_set() and sessions.pending == 2 and replay.starts == (0.0, 0.0, 0.0)
    gevent.sleep(0.2)  # the background greenlet's turn: the loop has nothing else to do
    assert sessions.pending == 0


def test_prepared_sessions_need_a_target() -> None:
    workload = Workload.of(Settings(recordings=Path("rec")), [_session(0, 2)])
    with pytest.raises(Exception, match="no target"):
        prepared_sessions(workload)


class _Watched(Packed, weakref=True, gc=True):
    """A packed session that a weak reference can watch go."""


def test_a_recorded_session_is_let_go_once_it_is_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the replay keeps is the prepared form; the recording as well would add to its memory."""
    monkeypatch.setattr(loading, "EAGER_UP_TO_REQUESTS", 0)
    replay = Replay(Settings(recordings=Path("rec")))
    recorded = [_Watched(*msgspec.structs.astuple(p)) for p in pack([_session(n, 3) for n in range(4)])]
    watched = [weakref.ref(s) for s in recorded]
    replay.load(Workload(Settings(recordings=Path("rec"), host="http://127.0.0.1:9"), list(recorded), "127.0.0.1:8000"))
    del recorded
    sessions = replay.sessions
    assert isinstance(sessions, PreparedSessions)
    assert sessions[2].name == "visit 2" and watched[2]() is None and watched[0]() is not None
    sessions.prepare_rest(lambda: None)
    assert [w() for w in watched] == [None] * 4
    assert [s.name for s in sessions] == [f"visit {n}" for n in range(4)]


def _long_session(requests: int) -> Session:
    """A login's token in every request, and carts created in one run of steps and read back in a
    later one: what a run built later must carry over from one built before."""
    steps = [answered(make_request("/login", "POST", offset_ms=0), '{"token": "tok-00042-abcdef"}')]
    auth = [("Authorization", "Bearer tok-00042-abcdef")]
    for k in range(1, requests):
        if k % 450 == 0:
            request = answered(make_request("/carts", "POST", offset_ms=50.0 * k, headers=auth, body=b"{}",
                                            content_type="application/json"), f'{{"id": {k // 450}}}', status=201)
        elif k % 450 == 60:
            request = make_request(f"/carts/{k // 450}", offset_ms=50.0 * k, headers=auth)
        else:  # every seventh starts before the previous one has its answer: an asset
            request = make_request(f"/items/{k}", offset_ms=50.0 * k - (4.0 if k % 7 == 0 else 0.0), headers=auth)
        steps.append(request)
    return make_session(steps, id="long", name="long visit")


def _sent(session: PreparedSession) -> list[tuple[object, ...]]:
    """What each step would send with the recorded values, when and after what: the replay's view."""
    values = list(session.initial)
    out: list[tuple[object, ...]] = []
    for step in session.steps:
        patch = step.patch
        url = patch.url_prefix + patch.path.render(values) if patch and patch.path else step.url
        headers = dict(step.headers)
        for name, template in patch.headers if patch else ():
            headers[name] = template.render(values)
        body = patch.body.render(values) if patch and patch.body else step.body
        out.append((step.index, step.method, url, step.name, sorted(headers.items()), body, step.think, step.at,
                    step.overlaps, step.skip, patch.variables if patch else (), [v for v, _ in step.extract]))
    return out


def test_a_long_session_is_built_a_run_at_a_time_and_sends_what_it_would_built_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = _long_session(1_300)
    lazy = prepare_session(session, 2.0)
    steps = lazy.steps
    assert isinstance(steps, steps_module.Steps) and not steps.complete and len(steps) == 1_300
    # Taken out of order, as overlapping steps and a slice are, before the runs they fall in are built.
    assert steps[1_299].index == 1_300 and steps[-1] is steps[1_299] and [s.index for s in steps[498:503]] == [
        499, 500, 501, 502, 503]
    backwards = prepare_session(session, 2.0).steps[700:695:-1]  # (700 is the first of a run)
    assert [s.index for s in backwards] == [701, 700, 699, 698, 697]
    monkeypatch.setattr(steps_module, "STEPS_PER_RUN", 10_000)
    whole = prepare_session(session, 2.0)
    assert whole.steps.complete
    assert steps.complete and _sent(lazy) == _sent(whole)
    cart = [v for v, c in enumerate(lazy.variables) if c.value == "2"]
    assert cart and steps[960].patch is not None and steps[960].patch.variables == (0, *cart)
    assert [v for v, _ in steps[900].extract] == cart  # read from a run built before the one that sends it
    with pytest.raises(IndexError):
        steps[1_300]


def test_a_long_session_starts_with_its_first_run_of_steps_and_builds_the_rest_while_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "EAGER_UP_TO_REQUESTS", 10)
    replay = Replay(Settings(recordings=Path("rec")))
    replay.load(_workload([_long_session(1_300), _session(1, 3)]))
    sessions = replay.sessions
    assert isinstance(sessions, PreparedSessions) and replay.ready.is_set()
    long = sessions._prepared[0]
    assert long is not None and not long.steps.complete and sessions.pending == 1
    gevent.sleep(0.5)  # the background greenlet's turns
    assert long.steps.complete and sessions.pending == 0
