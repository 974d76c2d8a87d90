"""Replay recorded sessions with Locust: ``replay run`` uses this file, and so can you.

    REPLAY_RECORDINGS=recordings/ locust -f replayer/locustfile.py --host http://127.0.0.1:8000

Settings come from ``REPLAY_*`` environment variables (see README). Each virtual user
picks a session by weight, sends its requests in order with the recorded think time
divided by ``REPLAY_SPEED``, keeps its own cookies, and never follows redirects itself.
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any, ClassVar

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from rich.console import Console

from replayer.prepared import PreparedSession, prepare
from replayer.report import SessionCounts, build_summary
from traffic_replay.errors import ReplayError
from traffic_replay.format import load_recordings
from traffic_replay.settings import Settings
from traffic_replay.summary import render

logger = logging.getLogger(__name__)


class ReplayUser(FastHttpUser):
    """A virtual user that replays recorded sessions, one per task iteration."""

    # Think time lives inside the sessions; between two sessions a user starts the next at once.
    wait_time = constant(0)

    sessions: ClassVar[tuple[PreparedSession, ...]] = ()
    cum_weights: ClassVar[tuple[float, ...]] = ()
    counts: ClassVar[SessionCounts] = SessionCounts()

    @task
    def replay_session(self) -> None:
        session = random.choices(self.sessions, cum_weights=self.cum_weights)[0]
        counts = self.counts
        counts.started += 1
        failed = False
        request = self.client.request
        for step in session.steps:
            if step.think:
                gevent.sleep(step.think)
            # Locust's hint for data omits bytes, which FastHttpSession sends as they are.
            with request(step.method, step.path, name=step.name, data=step.body,  # type: ignore[arg-type]
                         headers=step.headers, allow_redirects=False, catch_response=True) as response:
                status = response.status_code
                if status and (status // 100 == step.expected or not step.expected):
                    response.success()
                else:
                    failed = True
                    response.failure(_reason(step.label, step.expected, status, response))
        if failed:
            counts.failed += 1
        else:
            counts.completed += 1


def _reason(label: str, expected: int, status: int, response: Any) -> str:
    if not status:
        return f"{label}: {getattr(response, 'error', None) or 'no response'}"
    return f"{label}: status {status}, recorded {expected}xx"


def _load_sessions(environment: Environment, **_kwargs: Any) -> None:
    settings = Settings()
    logging.getLogger("replayer").setLevel(logging.DEBUG if settings.debug else logging.INFO)
    if environment.host is None and settings.host:
        environment.host = settings.host
    if not isinstance(environment.runner, WorkerRunner):
        environment.events.quitting.add_listener(lambda environment, **kw: _report(environment, settings))
    if isinstance(environment.runner, MasterRunner):
        environment.events.worker_report.add_listener(lambda client_id, data: ReplayUser.counts.add(
            data.get("replay_sessions", {})))
        return
    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__("replay_sessions", ReplayUser.counts.take()))
    try:
        sessions = load_recordings(settings.recordings)
    except ReplayError as e:
        for line in str(e).splitlines():
            logger.error(f"error: {line}")
        sys.exit(2)
    ReplayUser.sessions, ReplayUser.cum_weights = prepare(sessions, settings.speed)
    logger.info(f"replaying {len(ReplayUser.sessions)} sessions from {settings.recordings}/"
                f" at speed {settings.speed:g}")


events.init.add_listener(_load_sessions)


def _report(environment: Environment, settings: Settings) -> None:
    summary = build_summary(environment, ReplayUser.counts)
    render(summary, Console(width=140))
    if settings.summary_json is not None:
        summary.write(settings.summary_json)
    # Our summary replaces Locust's end-of-run tables, which would repeat it.
    logging.getLogger("locust.stats_logger").disabled = True
