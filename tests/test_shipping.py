"""The master's books: user slots, ready workers, and the run log that workers report and the master merges."""

from __future__ import annotations

import subprocess
import sys

import pytest

from replayer.divergence import RunLog
from replayer.prepared import Step
from replayer.slots import Slots

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
    one.started, one.completed = 3, 2
    one.skip("host cdn.example:443 not mapped")
    one.diverged("checkout", _step(4), "status 500, recorded 200")
    one.sent_unsourced("checkout", 4, "1001")
    one.intended("GET", "/s1", 12.0)
    two.started, two.failed = 2, 1
    two.skip("host cdn.example:443 not mapped")
    two.diverged("checkout", _step(2), "status 404, recorded 200")  # earlier in the session: this one is first
    two.sent_unsourced("checkout", 4, "1001")
    two.intended("GET", "/s1", 12.0)
    for log in (one, two):
        master.add(log.take())
    assert (master.started, master.completed, master.failed) == (5, 2, 1)
    assert master.skipped == {"host cdn.example:443 not mapped": 2}
    assert master.divergences == {"checkout": [2, "GET", "/s2", "status 404, recorded 200", 1]}
    assert master.unsourced == {("checkout", 4, "1001"): 2}
    assert master.late == {"GET /s1": {12: 2}}
    assert one.take()["started"] == 0, "what was reported is not reported again"
