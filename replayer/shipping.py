"""The master's side of a replay (a local run's too): the payload to every worker, ready workers, user slots.

Following Locust's ``examples/custom_messages.py``: handlers are registered on the
runner in ``events.init`` and talk in custom messages. A worker asks for the payload
(``HELLO``) once its own handler is registered, rather than the master sending it from
``worker_connect``, which can reach the worker before that handler exists and be dropped;
a worker that connects late, or again after a restart, asks in the same way. It answers
``READY`` once it holds and has prepared the payload, and only then does the master count
it among its ready workers (``--expect-workers``).

The hello carries the worker's version of traffic-replay: a master refuses (``REFUSED``)
a worker of another version, whose settings and payload could mean other things, and
both say so in one line naming both versions. A master also turns away (``STRANGER``)
any worker that talks to it without having joined it: one that was a previous master's,
on this port, before a restart; it stops (``replayer.receiving``) rather than send this
run its stats or ask for slots, and a supervisor starts it again into this master. A
worker that quits before the first run is forgotten, and the master waits on for others.

Each virtual user of the whole run takes a *slot* from the master when it starts: the
lowest number no running user holds. A user's ``--data`` row and its share of the
timeline follow from its slot, so no two users anywhere share a row while there are rows
enough, and the timeline replays each session once per round across all workers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust.env import Environment
from locust.rpc import Message
from locust.runners import (
    STATE_INIT,
    STATE_MISSING,
    STATE_RUNNING,
    STATE_SPAWNING,
    LocalRunner,
    MasterRunner,
    Runner,
    WorkerNodes,
)

from replayer.slots import Slots
from traffic_replay import __version__
from traffic_replay.payload import Payload
from traffic_replay.summary import WorkerStats

logger = logging.getLogger(__name__)

HELLO = "replay_hello"
"""worker → master: ``{"version": ...}`` my handlers are registered, send me the payload."""
REFUSED = "replay_refused"
"""master → worker: ``{"master_version": ..., "worker_version": ...}`` this master will not work with you."""
STRANGER = "replay_stranger"
"""master → worker: you never joined this master (you were another's): stop."""
PAYLOAD = "replay_payload"
"""master → worker: ``Payload.message()``."""
READY = "replay_ready"
"""worker → master: ``{"digest": ...}`` once prepared, or ``{"error": ...}``."""
TAKE_SLOT = "replay_take_slot"
"""worker → master: ``{"ask": n}`` a user starts and needs a slot."""
SLOT = "replay_slot"
"""master → worker: ``{"ask": n, "slot": slot}``."""
FREE_SLOT = "replay_free_slot"
"""worker → master: ``{"slot": slot}`` a user stopped."""
FINAL = "replay_final"
"""master → workers, as the run stops: stop your users and report now."""
REPORTED = "replay_reported"
"""worker → master: my last report went before this."""

FINAL_REPORT_WAIT_S = 10.0
"""How long a stopping master waits for its workers' last reports."""

JOINING = frozenset({"client_ready", "locustfile", "quit"})
"""Locust's messages a worker sends before it has joined (or as it leaves): the only ones a stranger may send."""


class ReadyWorkers(WorkerNodes):
    """Locust's worker table, where "ready" means "holds the payload": what ``--expect-workers`` waits for."""

    def __init__(self, holding: set[str]) -> None:
        super().__init__()
        self.holding = holding

    @property
    def ready(self) -> list[Any]:
        return [node for node in super().ready if node.id in self.holding]


class Shipping:
    """Sends the payload to whoever asks, and keeps the books on workers and slots."""

    def __init__(self, runner: Runner, payload: Payload) -> None:
        self.runner = runner
        self.payload = payload
        self.slots = Slots()
        self.took_part: set[str] = set()
        self.lost: set[str] = set()
        self.requests: dict[str, int] = {}
        """Requests each worker reported, by its id."""
        self.ending = False
        runner.register_message(HELLO, self.on_hello)
        runner.register_message(READY, self.on_ready)
        runner.register_message(TAKE_SLOT, self.on_take_slot)
        runner.register_message(FREE_SLOT, self.on_free_slot)
        runner.register_message(REPORTED, self.on_reported)
        self.reported: set[str] = set()
        self.joined: set[str] = set()
        """Workers that said Locust's ``client_ready`` to this master."""
        self.strangers: set[str] = set()
        if isinstance(runner, MasterRunner):
            runner.clients = ReadyWorkers(self.took_part)
            self._turn_away_strangers(runner)
            events = runner.environment.events
            events.worker_report.add_listener(self._count)
            events.test_start.add_listener(self._starting)
            events.test_stopping.add_listener(self._ending)
            events.test_stop.add_listener(self._collect_last_reports)
            runner.greenlet.spawn(self._watch).link_exception(lambda g: logger.error(f"worker watch: {g.exception}"))

    def _turn_away_strangers(self, runner: MasterRunner) -> None:
        """Messages from a worker that never said ``client_ready`` here reach no handler: its sender is told to stop.

        "Never joined", not "not in Locust's table": a worker leaves the table for a moment
        between a stopped run and the next (``client_stopped``, then ``client_ready``).
        """
        handle = runner.handle_message

        def from_joined_workers(client_id: str, msg: Message) -> None:
            if msg.type == "client_ready":
                self.joined.add(msg.node_id)
            if msg.type == "quit" and runner.state == STATE_INIT and msg.node_id in runner.clients:
                self._left_before_the_run(msg.node_id)
                return
            if msg.node_id in self.joined or msg.type in JOINING:
                handle(client_id, msg)
                return
            # Locust would count a stranger's stats in this run and ignore its heartbeats; it would
            # stay until its own 60 s heartbeat timeout, replaying the previous master's recordings.
            if msg.node_id not in self.strangers:
                self.strangers.add(msg.node_id)
                logger.warning(f"worker {msg.node_id} never joined this master (a previous master's?): told to stop")
            runner.send_message(STRANGER, {}, client_id=msg.node_id)
        runner.handle_message = from_joined_workers  # type: ignore[method-assign]

    def _left_before_the_run(self, node_id: str) -> None:
        """A worker that quits before the first run: out of the table, and the master waits on for others.

        Locust would stop its runner when the last worker quits, and a headless master that
        still waits for ``--expect-workers`` would wait for ever, with no one left to
        accept new workers.
        """
        logger.info(f"worker {node_id} left before the run started")
        self._forget(node_id)
        self.took_part.discard(node_id)  # it held the recordings, but ran no user
        self.lost.discard(node_id)

    def on_hello(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        if (version := msg.data.get("version")) != __version__:
            theirs = version or "unknown (older than the version check)"
            logger.error(f"worker {msg.node_id} runs traffic-replay {theirs}, this master {__version__}: refused "
                         "(run the same version everywhere)")
            self.runner.send_message(REFUSED, {"master_version": __version__, "worker_version": theirs},
                                     client_id=msg.node_id)
            self._forget(msg.node_id)
            return
        self.runner.send_message(PAYLOAD, self.payload.message(), client_id=msg.node_id)

    def _forget(self, node_id: str) -> None:
        """Out of Locust's table and its dispatcher: no users, and its quitting is no "last worker quit"."""
        runner = self.runner
        if not isinstance(runner, MasterRunner) or (node := runner.clients.get(node_id)) is None:
            return
        del runner.clients[node_id]
        if runner._users_dispatcher is not None:
            runner._users_dispatcher.remove_worker(node)

    def on_ready(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        if error := msg.data.get("error"):
            if not isinstance(self.runner, LocalRunner):  # a local run's own error: the locustfile reports it
                logger.error(f"worker {msg.node_id} cannot replay: {error}")
            return
        if msg.data.get("digest") != self.payload.digest:
            logger.error(f"worker {msg.node_id} holds another payload than this master's; it gets no users")
            return
        self.took_part.add(msg.node_id)
        self.lost.discard(msg.node_id)
        if isinstance(self.runner, MasterRunner):
            logger.info(f"worker {msg.node_id} holds the recordings: {len(self.took_part)} ready")
            self._join_run(msg.node_id)

    def _join_run(self, node_id: str) -> None:
        """A worker that was not ready when the run started gets its share of the users now."""
        runner = self.runner
        assert isinstance(runner, MasterRunner)
        dispatcher = runner._users_dispatcher
        if dispatcher is None or runner.state not in (STATE_RUNNING, STATE_SPAWNING) or node_id not in runner.clients:
            return
        if all(node.id != node_id for node in dispatcher._worker_nodes):
            dispatcher.add_worker(runner.clients[node_id])
            runner.start(runner.target_user_count, runner.spawn_rate)

    def on_take_slot(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        slot = self.slots.take(msg.node_id)
        self.runner.send_message(SLOT, {"ask": msg.data["ask"], "slot": slot}, client_id=msg.node_id)

    def on_free_slot(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        self.slots.give_back(msg.data["slot"], msg.node_id)

    def on_reported(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        self.reported.add(msg.node_id)

    def _collect_last_reports(self, **_kw: Any) -> None:
        """Wait until each worker has stopped its users and reported, so that the summary covers the whole run.

        Locust's master gives its workers' last reports half a second after it says "quit",
        and a busy worker misses that; this asks first, and waits for the answers.
        """
        assert isinstance(self.runner, MasterRunner)
        clients = self.runner.clients
        expected = {node_id for node_id in self.took_part - self.lost if node_id in clients}
        self.reported.clear()
        self.runner.send_message(FINAL, {})
        deadline = time.monotonic() + FINAL_REPORT_WAIT_S
        while expected - self.reported and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if missing := expected - self.reported:
            logger.warning(f"no last report from {len(missing)} worker(s) in {FINAL_REPORT_WAIT_S:g} s")

    def _count(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        sent = sum(entry["num_requests"] for entry in data.get("stats", ()))
        self.requests[client_id] = self.requests.get(client_id, 0) + sent

    def _starting(self, **_kw: Any) -> None:
        self.ending = False

    def _ending(self, **_kw: Any) -> None:
        # Workers leave Locust's table when they stop at the end: that is not a loss.
        self.ending = True

    def _watch(self) -> None:
        """Workers that went missing (killed, unplugged) or left while the run went on are lost; so are their slots."""
        assert isinstance(self.runner, MasterRunner)
        clients = self.runner.clients
        while True:
            gevent.sleep(1)
            if self.ending:
                continue
            lost = [node_id for node_id in self.took_part - self.lost
                    if (node := clients.get(node_id)) is None or node.state == STATE_MISSING]
            for node_id in lost:
                self.lost.add(node_id)
                self.slots.release(node_id)
                logger.warning(f"worker {node_id} was lost; its users start again on the others")
            runner = self.runner
            if lost and runner.state == STATE_RUNNING and runner.spawning_completed:
                # Locust itself waits a minute before it gives a missing worker's users to the others.
                runner.start(runner.target_user_count, runner.spawn_rate)

    def workers(self) -> WorkerStats | None:
        """How many workers took part and how many were lost (None for a local run)."""
        if not isinstance(self.runner, MasterRunner):
            return None
        ordered = sorted(self.took_part, key=self.runner.get_worker_index)
        return WorkerStats(took_part=len(ordered), lost=len(self.lost),
                           requests=[self.requests.get(node_id, 0) for node_id in ordered])
