"""The side of a replay that runs users (a worker, or a local run): it asks for the payload, then for slots.

A worker holds no recordings and no settings of its own: it registers its handlers, asks
the master for the payload (``HELLO``), checks its digest, prepares the sessions with the
master's settings (its own per-machine ones kept) and says ``READY``. Its users wait for
that before they send anything, however early Locust spawns them.

A worker stops, with one line and a non-zero exit code, when it cannot work for its
master: the master runs another version (``REFUSED``), the master on its port does not
know it (``STRANGER``: it was restarted), or the master has been silent for
``MASTER_SILENT_S``. It does not join a restarted master by itself, as Locust's workers
do not (they quit after 60 s without the master's heartbeat): its users, its payload and
its slots were the old master's, and a worker started again joins cleanly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import gevent
from gevent import Timeout
from gevent.event import AsyncResult
from locust.env import Environment
from locust.exception import StopUser
from locust.rpc import Message
from locust.runners import Runner, WorkerRunner

from replayer.loading import Replay
from replayer.shipping import FINAL, FREE_SLOT, HELLO, PAYLOAD, READY, REFUSED, REPORTED, SLOT, STRANGER, TAKE_SLOT
from traffic_replay import __version__
from traffic_replay.errors import MasterLost, ReplayError, VersionMismatch, WorkerStopped, report_error
from traffic_replay.payload import Payload
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)

SLOT_WAIT_S = 30.0
"""How long a starting user waits for the master to give it a slot."""

MASTER_SILENT_S = 10.0
"""How long a worker goes on without the master's heartbeat (one a second) before it stops.

Locust's own limit is 60 s, in which a worker whose master died keeps loading the target.
"""


class Receiving:
    """Gets the payload into ``replay``, and slots for its users."""

    def __init__(self, runner: Runner, replay: Replay, local: Settings,
                 on_loaded: Callable[[Replay], None] = lambda replay: None) -> None:
        self.runner = runner
        self.replay = replay
        self.local = local
        self.on_loaded = on_loaded
        self.asks = count()
        self.waiting: dict[int, AsyncResult] = {}
        self.failed: ReplayError | None = None
        """Why the payload could not be loaded here (logged as it failed)."""
        runner.register_message(PAYLOAD, self.on_payload)
        runner.register_message(SLOT, self.on_slot)
        self.stopping = False
        if isinstance(runner, WorkerRunner):
            runner.register_message(FINAL, self.on_final)
            runner.register_message(REFUSED, self.on_refused)
            runner.register_message(STRANGER, self.on_stranger)
            watch = runner.greenlet.spawn(self._watch_master)
            watch.link_exception(lambda g: logger.error(f"master watch: {g.exception}"))

    def ask_for_payload(self) -> None:
        self.runner.send_message(HELLO, {"version": __version__})

    def _master(self) -> str:
        runner = self.runner
        assert isinstance(runner, WorkerRunner)
        return f"{runner.master_host}:{runner.master_port}"

    def on_refused(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        self._stop(VersionMismatch(
            f"the master at {self._master()} runs traffic-replay {msg.data['master_version']}, this worker "
            f"{msg.data['worker_version']}: refused (run the same version everywhere)"))

    def on_stranger(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        self._stop(MasterLost(f"the master at {self._master()} does not know this worker (it was restarted): "
                              "this worker stops; start it again to join the new master"))

    def _watch_master(self) -> None:
        """Stop once the master's heartbeat has not come for ``MASTER_SILENT_S`` of this process's own running time.

        Time this process spent unable to listen (preparing a large payload blocks the loop,
        and the heartbeats with it) is not the master's silence: the count starts again.
        """
        runner = self.runner
        assert isinstance(runner, WorkerRunner)
        seen = runner.last_heartbeat_timestamp
        heard = tick = time.monotonic()
        while not self.stopping:
            gevent.sleep(1)
            now = time.monotonic()
            if now - tick > 3 or runner.last_heartbeat_timestamp != seen:
                seen, heard = runner.last_heartbeat_timestamp, now
            tick = now
            if now - heard > MASTER_SILENT_S:
                self._stop(MasterLost(f"no word from the master at {self._master()} in {MASTER_SILENT_S:g} s "
                                      "(stopped or unreachable): this worker stops"))

    def _stop(self, error: WorkerStopped) -> None:
        """One line, then Locust's own way out (users stopped, exit code ``error``'s), once."""
        if self.stopping:
            return
        self.stopping = True
        report_error(error)
        runner = self.runner
        runner.environment.process_exit_code = error.exit_code
        # Not from this greenlet: quitting kills the runner's greenlets, this one among them.
        gevent.spawn(runner.quit)

    def on_payload(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        if self.replay.ready.is_set():
            return  # a second answer to a repeated hello: the payload is the same
        try:
            payload = Payload.from_message(msg.data)
            self.replay.load(payload.open(self.local), environment.host)
            self.on_loaded(self.replay)
        except ReplayError as e:
            self.failed = e
            if isinstance(self.runner, WorkerRunner):  # a local run reports it once, as it exits (locustfile)
                logger.error(f"error: {e}")
            self.runner.send_message(READY, {"error": str(e)})
            return
        self.runner.send_message(READY, {"digest": payload.digest})

    def on_final(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        runner = self.runner
        assert isinstance(runner, WorkerRunner)
        runner.stop()
        runner._send_stats()  # Locust's own report (stats and ours, through report_to_master), now, not in 3 s
        runner.send_message(REPORTED, {})

    def on_slot(self, environment: Environment, msg: Message, **_kw: Any) -> None:
        waiting = self.waiting.get(msg.data["ask"])
        if waiting is not None:
            waiting.set(msg.data["slot"])

    def take_slot(self) -> int:
        """A slot for a starting user, from the master (in a local run, at once)."""
        ask = next(self.asks)
        self.waiting[ask] = result = AsyncResult()
        try:
            self.runner.send_message(TAKE_SLOT, {"ask": ask})
            slot: int = result.get(timeout=SLOT_WAIT_S)
        except Timeout:
            logger.error(f"no slot from the master in {SLOT_WAIT_S:g} s: a user stops")
            raise StopUser() from None
        finally:
            del self.waiting[ask]
        return slot

    def free_slot(self, slot: int) -> None:
        self.runner.send_message(FREE_SLOT, {"slot": slot})
