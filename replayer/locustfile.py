"""Replay recorded sessions with Locust: ``replay run`` uses this file, and so can you.

    REPLAY_RECORDINGS=recordings/ locust -f replayer/locustfile.py --host http://127.0.0.1:8000

Settings come from ``REPLAY_*`` environment variables (see README). Each virtual user
picks a session by weight, sends its requests in order with the recorded think time
divided by ``REPLAY_SPEED``, keeps its own cookies, carries the values the server hands
out (tokens, ids) into the requests that follow, and never follows redirects itself.

Three load models. *Closed* (default): each Locust user replays one session after
another. *Open* (``REPLAY_SESSION_RATE``): users are arrival generators that start
sessions at a fixed total rate, each session a new visitor with its own cookies, however
slowly the target answers. *Timeline* (``REPLAY_TIMELINE``): sessions start at their
recorded start times. In the open models, requests are also timed from when the
recording says they should have been sent (the "intended" latency of the summary).
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Iterator
from itertools import count
from typing import Any, ClassVar

import gevent
from gevent.pool import Group
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.exception import CatchResponseError
from locust.runners import MasterRunner, WorkerRunner

from replayer.divergence import RunLog
from replayer.loading import load_prepared
from replayer.prepared import PreparedSession, Step
from replayer.report import SESSION, report
from replayer.sending import Sender
from traffic_replay.errors import ReplayError
from traffic_replay.extraction import ResponseView
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)


class ReplayUser(FastHttpUser):
    """A virtual user that replays recorded sessions (closed model), or starts them (open models)."""

    # Think time lives inside the sessions; between two sessions a user starts the next at once.
    wait_time = constant(0)

    settings: ClassVar[Settings]
    sessions: ClassVar[tuple[PreparedSession, ...]] = ()
    cum_weights: ClassVar[tuple[float, ...]] = ()
    rows: ClassVar[tuple[dict[str, str], ...]] = ()
    users_started: ClassVar[Iterator[int]] = count()
    log: ClassVar[RunLog] = RunLog()

    def on_start(self) -> None:
        self.number = next(self.users_started) + getattr(self.environment.runner, "worker_index", 0)
        # Each user its own row, round robin; each worker starts at its own offset.
        self.row = self.rows[self.number % len(self.rows)] if self.rows else {}
        self.visits = Group()

    def on_stop(self) -> None:
        self.visits.kill(block=False)

    @task
    def replay(self) -> None:
        settings = self.settings
        if settings.session_rate is not None:
            self._arrivals(settings.session_rate / settings.users, settings.arrivals == "poisson")
        elif settings.timeline:
            self._timeline(settings.speed, settings.users)
        else:
            session = random.choices(self.sessions, cum_weights=self.cum_weights)[0]
            # A new session is a new visit: no cookies from the last one.
            self.client.cookiejar.clear()
            self._replay(session, self.client, None)

    # The open models ----------------------------------------------------------------

    def _arrivals(self, rate: float, poisson: bool) -> None:
        """Start sessions at ``rate`` per second for this user, each in its own greenlet."""
        due = time.perf_counter()
        while True:
            due += random.expovariate(rate) if poisson else 1 / rate
            gevent.sleep(max(due - time.perf_counter(), 0))
            session = random.choices(self.sessions, cum_weights=self.cum_weights)[0]
            self.visits.spawn(self._replay, session, self._visitor(), due)

    def _timeline(self, speed: float, users: int) -> None:
        """Start this user's share of the sessions at their recorded times, round after round."""
        mine = [s for i, s in enumerate(self.sessions) if i % users == self.number % users]
        span = max((s.start for s in self.sessions), default=0.0) + 1.0
        origin = time.perf_counter()
        while True:
            for session in mine:
                due = origin + (session.start / speed if speed > 0 else 0.0)
                gevent.sleep(max(due - time.perf_counter(), 0))
                self.visits.spawn(self._replay, session, self._visitor(), due)
            origin += span / speed if speed > 0 else 0.1
            gevent.sleep(max(origin - time.perf_counter(), 0))

    def _visitor(self) -> FastHttpSession:
        """A client of its own (its own cookies) on this user's connection pool."""
        return FastHttpSession(base_url=self.host, request_event=self.environment.events.request, user=self,
                               insecure=self.insecure, concurrency=self.concurrency,
                               network_timeout=self.network_timeout, connection_timeout=self.connection_timeout,
                               max_retries=self.max_retries, client_pool=self.client.client.clientpool)

    # One session --------------------------------------------------------------------

    def _replay(self, session: PreparedSession, client: FastHttpSession, due: float | None) -> None:
        """Send a session's steps in order; ``due`` is its intended start in the open models."""
        log = self.log
        log.started += 1
        if session.missing is not None:
            self._fail_unsendable(session, session.missing)
            return
        values = list(session.initial)
        live = list(session.live)
        for var, column in session.data:
            values[var], live[var] = self.row[column], True
        state = (session, client, Sender(client, self.environment.events.request.fire), values, live)
        failed = False
        began = time.perf_counter()
        steps = session.steps
        parallel = self.settings.parallel_overlaps
        i, n = 0, len(steps)
        while i < n:
            step = steps[i]
            if due is None:
                if step.think:
                    gevent.sleep(step.think)
            else:
                gevent.sleep(max(due + step.at - time.perf_counter(), 0))
            if parallel and i + 1 < n and steps[i + 1].overlaps:
                j = i + 1
                while j < n and steps[j].overlaps:
                    j += 1
                # The browser sent these before the first had its answer: send them alongside it.
                others = [gevent.spawn(self._send_at, state, s, s.at - step.at, due) for s in steps[i + 1:j]]
                failed |= self._send(state, step, due)
                gevent.joinall(others)
                failed |= any(g.value for g in others)
                i = j
                continue
            failed |= self._send(state, step, due)
            i += 1
        if failed:
            log.failed += 1
        else:
            log.completed += 1
        self.environment.events.request.fire(
            request_type=SESSION, name=session.name, response_time=(time.perf_counter() - began) * 1000,
            response_length=0, exception=CatchResponseError("a step failed") if failed else None, context={})

    def _send_at(self, state: tuple[Any, ...], step: Step, delay: float, due: float | None) -> bool:
        gevent.sleep(max(delay, 0))
        return self._send(state, step, due)

    def _send(self, state: tuple[Any, ...], step: Step, due: float | None) -> bool:
        """Send one step; True when it failed."""
        session, client, sender, values, live = state
        if step.skip is not None:
            self.log.skip(step.skip)
            return False
        url, headers, body = step.url, step.headers, step.body
        if step.patch is not None:
            url, headers, body = self._patched(session, step, values, live)
        failed: bool
        response, failed = sender(step.method, url, step.name, headers, body, step.expected, step.label)
        status = response.status_code
        if status:
            header = response.headers.get
            content = response.content
            self.log.check(session.name, step, status, header, content)
            if step.extract:
                view = ResponseView(header, content, lambda name: _cookie(client, name))
                for var, extract in step.extract:
                    found = extract(view)
                    if found is not None:
                        values[var], live[var] = found, True
        if due is not None:
            self.log.intended(step.method, step.name, (time.perf_counter() - due - step.at) * 1000)
        return failed

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
                                             response_length=0, exception=CatchResponseError(reason), context={})
        self.log.failed += 1
        # A missing secret fails every time: pace the failures instead of spinning on them.
        gevent.sleep(1.0)


def _cookie(client: FastHttpSession, name: str) -> str | None:
    found = None
    for cookie in client.cookiejar:
        if cookie.name == name:
            found = cookie.value
    return found


def _load_sessions(environment: Environment, **_kwargs: Any) -> None:
    settings = ReplayUser.settings = Settings.of_process()
    # A stalled target must show up as failures, not as requests that never end.
    ReplayUser.network_timeout = ReplayUser.connection_timeout = settings.timeout
    logging.getLogger("replayer").setLevel(logging.DEBUG if settings.debug else logging.INFO)
    if environment.host is None and settings.host:
        environment.host = settings.host
    if not isinstance(environment.runner, WorkerRunner):
        environment.events.quitting.add_listener(
            lambda environment, **kw: report(environment, ReplayUser.log, settings.summary_json))
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
    # gevent's loop caches "now"; Locust arms its --run-time timer right after this listener, and
    # with the time spent loading still unaccounted the timer would fire that much too early.
    gevent.get_hub().loop.update_now()
    model = (f"open model, {settings.session_rate:g} sessions/s ({settings.arrivals})" if settings.session_rate
             else "timeline" if settings.timeline else "closed model")
    logger.info(f"replaying {len(ReplayUser.sessions)} sessions from {settings.recordings}/ at speed"
                f" {settings.speed:g}, {model}, correlation {'on' if settings.correlate else 'off'}")


events.init.add_listener(_load_sessions)
