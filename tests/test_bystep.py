"""A session's correlations by step (``traffic_replay.correlation.bystep``): the cache entry a long
session's replay reads a block at a time must give each run of steps what the correlations in memory
give it, refuse an entry that is damaged or of another session, and hold a fraction of the memory."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
from test_loading import _sent

from replayer import steps as steps_module
from replayer.loading import prepared_sessions
from replayer.prepared import prepare_session
from traffic_replay.correlation import Correlation, Source, Use, detect
from traffic_replay.correlation.bystep import BLOCK, Indexed, InMemory, Joined, encode
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.format import Session, dump_session, file_digest
from traffic_replay.packing import Unpacker, pack
from traffic_replay.payload import Workload
from traffic_replay.piecewise import PIECEWISE_FROM, Requests
from traffic_replay.settings import Settings

from factories import answered, make_request, make_session

pytestmark = pytest.mark.timeout(120)

TOKEN = "tok-7f3a9c2e5b81"


def _busy_session(requests: int) -> Session:
    """A fresh database's carts (ids 1, 2, 3 ...) created and sent back in a path, a query, a JSON body
    and a header, behind a login's token sent by every request: a correlation every four steps."""
    steps = [answered(make_request("/login", "POST", body=b'{"user": "ann"}', content_type="application/json"),
                      f'{{"token": "{TOKEN}"}}')]
    auth = [("Authorization", f"Bearer {TOKEN}")]
    while len(steps) < requests:
        cart, at = len(steps) // 4 + 1, 20.0 * len(steps)
        steps += [
            answered(make_request("/carts", "POST", offset_ms=at, headers=auth, body=b"{}",
                                  content_type="application/json"), f'{{"id": {cart}}}', status=201),
            make_request(f"/carts/{cart}", offset_ms=at + 5, headers=auth),
            make_request(f"/search?cart={cart}&q=socks", offset_ms=at + 10, headers=auth),
            make_request("/orders", "POST", offset_ms=at + 15, headers=[*auth, ("X-Cart-Id", str(cart))],
                         body=f'{{"cart_id": {cart}, "note": "cart {cart}"}}'.encode(),
                         content_type="application/json"),
        ]
    return make_session(steps[:requests], id="busy", name="busy visit")


@pytest.fixture(scope="module")
def busy() -> tuple[Session, list[Correlation]]:
    session = _busy_session(2_345)
    return session, detect(session)


def _entry(tmp_path: Path, correlations: list[Correlation], steps: int) -> Path:
    path = tmp_path / "entry.msgpack"
    path.write_bytes(encode(correlations, steps))
    return path


def test_every_run_of_steps_reads_what_the_correlations_in_memory_give(
        tmp_path: Path, busy: tuple[Session, list[Correlation]]) -> None:
    session, correlations = busy
    steps = len(session.requests)
    # The shapes a fresh database gives: one-digit ids, in each place a use can have.
    places = {(u.place, u.json_path is not None, u.span is not None) for c in correlations for u in c.uses}
    assert {("path", False, True), ("header", False, False), ("body", True, False)} <= places
    assert any(c.value == "1" for c in correlations) and len(correlations) > steps // 4
    indexed = Indexed.open(_entry(tmp_path, correlations, steps), steps)
    in_memory = InMemory(correlations)
    assert indexed is not None and indexed.values == in_memory.values and len(indexed) == len(correlations)
    runs = [(start, min(start + BLOCK, steps)) for start in range(0, steps, BLOCK)]
    # As the builder asks (a block a run), and across blocks, off their edges, and a block's tail.
    for start, stop in [*runs, (0, steps), (50, 250), (2_299, 2_345), (1_999, 2_001), (150, 160)]:
        assert indexed.at(start, stop) == in_memory.at(start, stop), (start, stop)
    for var in (0, 1, len(correlations) // 2, len(correlations) - 1):
        assert indexed.variable(var) == in_memory.variable(var)
        assert indexed.variable(var).uses == [] and indexed.variable(var).sources


def test_joined_numbers_the_second_after_the_first() -> None:
    first = InMemory([Correlation("a", [Source(0, "json", "a")], [Use(3, "path")])])
    second = InMemory([Correlation("«redacted:0a1b2c3d»", [], [Use(3, "header", "X-Key")], rule="secret")], first=1)
    joined = Joined(first, second)
    assert joined.values == ("a", "«redacted:0a1b2c3d»") and len(joined) == 2
    uses, sources = joined.at(0, 5)
    assert [(var, use.place) for var, use, _ in uses[3]] == [(0, "path"), (1, "header")]
    assert sources == {0: [(0, Source(0, "json", "a"))]}
    assert joined.variable(1).rule == "secret" and joined.variable(0).value == "a"


def test_an_entry_damaged_or_of_another_session_is_not_used(
        tmp_path: Path, busy: tuple[Session, list[Correlation]]) -> None:
    session, correlations = busy
    steps = len(session.requests)
    path = _entry(tmp_path, correlations, steps)
    good = path.read_bytes()
    assert Indexed.open(path, steps) is not None
    assert Indexed.open(path, steps + 1) is None and Indexed.open(path, steps - BLOCK) is None
    assert Indexed.open(tmp_path / "missing.msgpack", steps) is None
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    for damaged in (bytes(flipped), good[:-10], good[:5], b""):
        path.write_bytes(damaged)
        assert Indexed.open(path, steps) is None


def test_the_cache_writes_it_for_a_long_session_and_makes_it_again_from_the_analysis(
        tmp_path: Path, busy: tuple[Session, list[Correlation]]) -> None:
    session, correlations = busy
    digest = file_digest(dump_session(session))
    cache = AnalysisCache(tmp_path)
    cache.analyse(session, digest)
    (entry,) = tmp_path.glob("by-step/*/*.msgpack")
    found = cache.by_step(digest, len(session.requests))
    assert isinstance(found, Indexed) and found.values == tuple(c.value for c in correlations)
    entry.unlink()  # (say, the cache of an older version: its analysis is there, not this)
    assert isinstance(cache.by_step(digest, len(session.requests)), Indexed) and entry.exists()
    entry.unlink()
    entry.mkdir()  # an entry that cannot be written (a directory in its place): the analysis, in memory
    assert isinstance(cache.by_step(digest, len(session.requests)), InMemory)
    assert cache.by_step("0" * 64, len(session.requests)) is None  # never analysed
    short = _busy_session(PIECEWISE_FROM - 1)
    short_digest = file_digest(dump_session(short))
    cache.analyse(short, short_digest)  # (decoded whole: no replay reads it by step)
    assert (tmp_path / "analysis").exists() and not (entry.parent / f"{short_digest}.msgpack").exists()


def test_a_long_session_replayed_from_it_sends_what_it_sends_from_its_analysis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy: tuple[Session, list[Correlation]]) -> None:
    session, _ = busy
    (packed,) = pack([session])
    AnalysisCache(tmp_path).analyse(session, file_digest(dump_session(session)))
    settings = Settings(recordings=Path("rec"), host="http://127.0.0.1:9", cache_dir=tmp_path)
    (prepared,) = prepared_sessions(Workload(settings, [packed], "127.0.0.1:8000"))
    builder = prepared.steps._builder
    assert builder is not None and isinstance(builder.requests, Requests)
    assert isinstance(builder.variables, Indexed)
    whole = prepare_session(Unpacker()(packed), 1.0, correlate=True)
    assert _sent(prepared) == _sent(whole) and prepared.initial == whole.initial
    assert [prepared.variables[v] for v in (0, 5, len(whole.variables) - 1)] == \
        [whole.variables[v] for v in (0, 5, len(whole.variables) - 1)]
    assert any(step.patch for step in prepared.steps[1:]) and any(step.extract for step in prepared.steps[1:])
    monkeypatch.setattr(steps_module, "STEPS_PER_RUN", 1_000)  # (runs over several blocks build alike)
    again = prepared_sessions(Workload(settings, [packed], "127.0.0.1:8000"))[0]
    assert _sent(again) == _sent(whole)


def test_what_a_long_session_holds_at_its_first_request_is_a_fraction_of_its_analysis(tmp_path: Path) -> None:
    """Memory, measured in-process (tracemalloc): a regression to holding every correlation decoded fails."""
    session = _busy_session(40_000)
    steps, digest = len(session.requests), file_digest(dump_session(session))
    cache = AnalysisCache(tmp_path)
    correlations = len(cache.analyse(session, digest).correlations)  # (both entries written)

    def held(by_step: bool) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            if by_step:
                detected: object = cache.by_step(digest, steps)
            else:
                remembered = cache.remembered(digest, steps)
                detected = remembered.correlations if remembered is not None else None
                del remembered
            prepared = prepare_session(session, 1.0, detected=detected)  # type: ignore[arg-type]
            gc.collect()
            taken = tracemalloc.get_traced_memory()[0] - before
            del prepared, detected
            return taken
        finally:
            tracemalloc.stop()
    from_analysis, from_entry = held(False), held(True)
    # ~10,000 correlations: decoded and indexed by step, against their values and one block of steps.
    assert correlations > 9_000
    assert from_entry < from_analysis / 10, (from_entry, from_analysis)
