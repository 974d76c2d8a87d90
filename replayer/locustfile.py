"""Replay recorded sessions with Locust: ``replay run`` uses this file, and so can you.

    REPLAY_RECORDINGS=recordings/ locust -f replayer/locustfile.py --host http://127.0.0.1:8000

Settings come from ``REPLAY_*`` environment variables (see README). Each virtual user
picks a session by weight, sends its requests in order with the recorded think time
divided by ``REPLAY_SPEED``, keeps its own cookies, carries the values the server hands
out (tokens, ids) into the requests that follow, and never follows redirects itself.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Iterator
from itertools import count
from typing import Any, ClassVar

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from rich.console import Console

from replayer.divergence import RunLog
from replayer.loading import load_prepared
from replayer.prepared import PreparedSession, Step
from replayer.report import build_summary
from traffic_replay.errors import ReplayError
from traffic_replay.extraction import ResponseView
from traffic_replay.settings import Settings
from traffic_replay.summary import render

logger = logging.getLogger(__name__)


class ReplayUser(FastHttpUser):
    """A virtual user that replays recorded sessions, one per task iteration."""

    # Think time lives inside the sessions; between two sessions a user starts the next at once.
    wait_time = constant(0)

    sessions: ClassVar[tuple[PreparedSession, ...]] = ()
    cum_weights: ClassVar[tuple[float, ...]] = ()
    rows: ClassVar[tuple[dict[str, str], ...]] = ()
    users_started: ClassVar[Iterator[int]] = count()
    log: ClassVar[RunLog] = RunLog()

    def on_start(self) -> None:
        # Each user its own row, round robin; each worker starts at its own offset.
        offset = getattr(self.environment.runner, "worker_index", 0)
        self.row = self.rows[(next(self.users_started) + offset) % len(self.rows)] if self.rows else {}

    @task
    def replay_session(self) -> None:
        session = random.choices(self.sessions, cum_weights=self.cum_weights)[0]
        log = self.log
        log.started += 1
        if session.missing is not None:
            self._fail_unsendable(session, session.missing)
            return
        # A new session is a new visit: no cookies, no live values yet (the recorded ones stand in).
        self.client.cookiejar.clear()
        values = list(session.initial)
        live = list(session.live)
        for var, column in session.data:
            values[var], live[var] = self.row[column], True
        failed = False
        request = self.client.request
        for step in session.steps:
            if step.skip is not None:
                log.skip(step.skip)
                continue
            if step.think:
                gevent.sleep(step.think)
            url, headers, body = step.url, step.headers, step.body
            if step.patch is not None:
                url, headers, body = self._patched(session, step, values, live)
            # Locust's hint for data omits bytes, which FastHttpSession sends as they are.
            with request(step.method, url, name=step.name, data=body,  # type: ignore[arg-type]
                         headers=headers, allow_redirects=False, catch_response=True) as response:
                status = response.status_code
                if status and (status // 100 == step.expected or not step.expected):
                    response.success()
                else:
                    failed = True
                    response.failure(_reason(step.label, step.expected, status, response))
                if status:
                    header = response.headers.get
                    log.check(session.name, step, status, header, response.content)
                    if step.extract:
                        view = ResponseView(header, response.content, self._cookie)
                        for var, extract in step.extract:
                            found = extract(view)
                            if found is not None:
                                values[var], live[var] = found, True
        if failed:
            log.failed += 1
        else:
            log.completed += 1

    def _patched(self, session: PreparedSession, step: Step,
                 values: list[str], live: list[bool]) -> tuple[str, dict[str, str], bytes | None]:
        patch = step.patch
        assert patch is not None
        for var in patch.variables:
            if not live[var]:
                self.log.sent_unsourced(session.name, step.index, session.initial[var])
        url = patch.url_prefix + patch.path.render(values) if patch.path is not None else step.url
        headers = step.headers
        if patch.headers:
            headers = dict(headers)
            for name, template in patch.headers:
                headers[name] = template.render(values)
        body = patch.body.render(values).encode() if patch.body is not None else step.body
        return url, headers, body

    def _fail_unsendable(self, session: PreparedSession, reason: str) -> None:
        first = session.steps[0]
        self.environment.events.request.fire(request_type=first.method, name=first.name, response_time=0,
                                             response_length=0, exception=ReplayError(reason), context={})
        self.log.failed += 1

    def _cookie(self, name: str) -> str | None:
        found = None
        for cookie in self.client.cookiejar:
            if cookie.name == name:
                found = cookie.value
        return found


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
        environment.events.worker_report.add_listener(lambda client_id, data: ReplayUser.log.add(
            data.get("replay", {})))
        return
    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__("replay", ReplayUser.log.take()))
    try:
        ReplayUser.sessions, ReplayUser.cum_weights, ReplayUser.rows = load_prepared(settings, environment.host)
    except ReplayError as e:
        for line in str(e).splitlines():
            logger.error(f"error: {line}")
        sys.exit(2)
    logger.info(f"replaying {len(ReplayUser.sessions)} sessions from {settings.recordings}/"
                f" at speed {settings.speed:g}, correlation {'on' if settings.correlate else 'off'}")


events.init.add_listener(_load_sessions)


def _report(environment: Environment, settings: Settings) -> None:
    summary = build_summary(environment, ReplayUser.log)
    render(summary, Console(width=140))
    if settings.summary_json is not None:
        summary.write(settings.summary_json)
    # Our summary replaces Locust's end-of-run tables, which would repeat it.
    logging.getLogger("locust.stats_logger").disabled = True

