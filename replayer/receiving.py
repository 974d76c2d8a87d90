"""The side of a replay that runs users (a worker, or a local run): it asks for the payload, then for slots.

A worker holds no recordings and no settings of its own: it registers its handlers, asks
the master for the payload (``HELLO``), checks its digest, prepares the sessions with the
master's settings (its own per-machine ones kept) and says ``READY``. Its users wait for
that before they send anything, however early Locust spawns them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import count
from typing import Any

from gevent import Timeout
from gevent.event import AsyncResult
from locust.env import Environment
from locust.exception import StopUser
from locust.rpc import Message
from locust.runners import Runner, WorkerRunner

from replayer.loading import Replay
from replayer.shipping import FINAL, FREE_SLOT, HELLO, PAYLOAD, READY, REPORTED, SLOT, TAKE_SLOT
from traffic_replay.errors import ReplayError
from traffic_replay.payload import Payload
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)

SLOT_WAIT_S = 30.0
"""How long a starting user waits for the master to give it a slot."""


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
        if isinstance(runner, WorkerRunner):
            runner.register_message(FINAL, self.on_final)

    def ask_for_payload(self) -> None:
        self.runner.send_message(HELLO, {})

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
