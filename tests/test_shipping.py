"""The master's books: user slots, ready workers, and the run log that workers report and the master merges."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from replayer.runlog import RunLog
from replayer.slots import Slots
from replayer.steps import Step

pytestmark = pytest.mark.timeout(10)


def test_slots_are_unique_lowest_first_and_a_lost_workers_come_back() -> None:
    slots = Slots()
    assert [slots.take("a"), slots.take("a"), slots.take("b"), slots.take("b")] == [0, 1, 2, 3]
    slots.give_back(1, "a")
    slots.give_back(2, "a")  # not a's: ignored
    assert slots.take("c") == 1
    slots.release("b")  # b was lost: its users' slots (and rows) go to the users that replace them
    assert [slots.take("c"), slots.take("c"), slots.take("c")] == [2, 3, 4]


READY_WORKERS = """
from locust.runners import STATE_INIT, WorkerNode
from replayer.shipping import ReadyWorkers
holding = set()
clients = ReadyWorkers(holding)
clients["w1"] = WorkerNode("w1", state=STATE_INIT)
clients["w2"] = WorkerNode("w2", state=STATE_INIT)
assert clients.ready == [], clients.ready
holding.add("w2")
assert [n.id for n in clients.ready] == ["w2"]
"""


def test_a_connected_worker_is_ready_only_once_it_holds_the_payload() -> None:
    # In a process of its own: Locust monkey-patches whoever imports it, and the test process runs mitmproxy too.
    result = subprocess.run([sys.executable, "-c", READY_WORKERS], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _step(index: int) -> Step:
    return Step(index=index, method="GET", url=f"/s{index}", name=f"/s{index}", headers={}, body=None, think=0.0,
                expected=2, session="checkout")


def test_the_workers_run_logs_merge_on_the_master() -> None:
    one, two, master = RunLog(), RunLog(), RunLog()
    checkout = one.session("checkout")
    checkout.started = 3
    checkout.ended(0.5, failed=False)
    checkout.ended(1.5, failed=False)
    one.skip(checkout, "host cdn.example:443 not mapped")
    one.diverged(checkout, _step(4), "status 500, recorded 200")
    one.sent_unsourced(checkout, "checkout", 4, "1001")
    one.intended("GET", "/s1", 12.0)
    other = two.session("checkout")
    other.started = 2
    other.ended(1.5, failed=True)
    two.skip(other, "host cdn.example:443 not mapped")
    two.diverged(other, _step(2), "status 404, recorded 200")  # earlier in the session: this one is first
    two.sent_unsourced(other, "checkout", 4, "1001")
    two.intended("GET", "/s1", 12.0)
    two.session("browse").started = 1
    for log in (one, two):
        master.add(log.take())
    assert (master.started, master.completed, master.failed) == (6, 2, 1)
    merged = master.sessions["checkout"]
    assert (merged.started, merged.completed, merged.failed, merged.unsourced, merged.skipped) == (5, 2, 1, 2, 2)
    assert merged.durations == {500: 1, 1500: 2}
    assert master.sessions["browse"].started == 1
    assert master.skipped == {"host cdn.example:443 not mapped": 2}
    d = merged.divergence
    assert d is not None and (d.step, d.method, d.name, d.what, d.occurrences) == (
        2, "GET", "/s2", "status 404, recorded 200", 1)
    assert master.unsourced == {("checkout", 4, "1001"): 2}
    assert master.late == {"GET /s1": {12: 2}}
    assert one.take()["sessions"]["checkout"][0] == 0, "what was reported is not reported again"


def test_a_worker_reports_each_divergence_once_and_keeps_its_first_step() -> None:
    worker, master = RunLog(), RunLog()
    tally = worker.session("checkout")
    worker.diverged(tally, _step(3), "status 500, recorded 200")
    master.add(worker.take())
    worker.diverged(tally, _step(3), "status 500, recorded 200")
    master.add(worker.take())
    master.add(worker.take())  # nothing new: adds nothing
    d = master.sessions["checkout"].divergence
    assert d is not None and (d.step, d.occurrences) == (3, 2)


def test_a_malformed_report_is_refused_whole() -> None:
    master = RunLog()
    with pytest.raises(msgspec.ValidationError):
        master.add({"sessions": {"checkout": [1, 0, 0, [], None, 0]}, "skipped": {"x": 1}})
    assert master.sessions == {} and master.skipped == {}
