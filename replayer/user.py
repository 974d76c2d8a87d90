"""The virtual user: replays recorded sessions (closed model), or starts them (open and timeline models).

Three load models. *Closed* (default): each Locust user replays one session after
another. *Open* (``--session-rate``): users are arrival generators that start sessions at
a fixed total rate, each session a new visitor with its own cookies, however slowly the
target answers. *Timeline* (``--timeline``): sessions start at their recorded start times,
each user starting the sessions of its slot. In the open models requests are also timed
from when the recording says they should have been sent (the "intended" latency).
"""

from __future__ import annotations

import functools
import gc
import logging
import random
import time
from bisect import bisect
from typing import Any, ClassVar

import gevent
from gevent.pool import Group
from locust import FastHttpUser, constant, task
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import CatchResponseError, StopUser

from replayer.loading import Replay
from replayer.prepared import PreparedSession
from replayer.receiving import Receiving
from replayer.runlog import SessionTally
from replayer.sending import Sender
from replayer.steps import Headers, Step, wire
from traffic_replay.correlation import ResponseView

logger = logging.getLogger(__name__)

Outgoing = tuple[str, Headers | dict[str, str], bytes | None]
"""What one step sends: its URL, headers (a dict once live values are in them) and body."""

PAYLOAD_WAIT_S = 120.0
"""How long a user spawned before its process holds the payload waits for it (a worker that joined late)."""


class ReplayUser(FastHttpUser):
    """A virtual user that replays recorded sessions (closed model), or starts them (open models)."""

    # Think time lives inside the sessions; between two sessions a user starts the next at once.
    wait_time = constant(0)

    replay: ClassVar[Replay]
    """This process's sessions, set in ``events.init`` (``replayer.locustfile``) and filled by its payload."""
    receiving: ClassVar[Receiving]

    def on_start(self) -> None:
        self.visits = Group()
        self.slot: int | None = None
        replay = self.replay
        if not replay.ready.wait(PAYLOAD_WAIT_S):
            logger.error(f"no payload from the master in {PAYLOAD_WAIT_S:g} s: a user stops")
            raise StopUser()
        _settle()
        self.log = replay.log
        self.settings = replay.settings
        self.sessions, self.cum_weights = replay.sessions, replay.cum_weights
        # The slot is unique across the run: it picks this user's row and its share of the timeline.
        self.slot = self.receiving.take_slot()
        self.row = replay.rows[self.slot % len(replay.rows)] if replay.rows else {}
        self.sender = Sender(self.client, self.environment.events.request.fire, self.network_timeout,
                             self.connection_timeout)

    def on_stop(self) -> None:
        self.visits.kill(block=False)
        if self.slot is not None:
            self.receiving.free_slot(self.slot)
            self.slot = None

    @task
    def replay_sessions(self) -> None:
        settings = self.settings
        if settings.session_rate is not None:
            self._arrivals(settings.session_rate / settings.users, settings.arrivals == "poisson")
        elif settings.timeline:
            assert self.slot is not None
            self._timeline(settings.speed, settings.users, self.slot)
        else:
            # A new session is a new visit: no cookies from the last one (a jar that holds none is left be).
            jar = self.client.cookiejar
            if jar._cookies:  # type: ignore[attr-defined]  # CookieJar's own store: clear() takes its lock
                jar.clear()
            self._replay(self._pick(), self.client, None)

    def _pick(self) -> PreparedSession:
        """A session by weight."""
        sessions = self.sessions
        if len(sessions) == 1:
            return sessions[0]
        cum_weights = self.cum_weights
        return sessions[bisect(cum_weights, random.random() * cum_weights[-1], 0, len(sessions) - 1)]

    # The open models ----------------------------------------------------------------

    def _arrivals(self, rate: float, poisson: bool) -> None:
        """Start sessions at ``rate`` per second for this user, each in its own greenlet."""
        due = time.perf_counter()
        while True:
            due += random.expovariate(rate) if poisson else 1 / rate
            gevent.sleep(max(due - time.perf_counter(), 0))
            self.visits.spawn(self._replay, self._pick(), self._visitor(), due)

    def _timeline(self, speed: float, users: int, slot: int) -> None:
        """Start this user's share of the sessions at their recorded times, round after round."""
        sessions = self.sessions
        # Indexes, not sessions: each is prepared when its time comes, not all of them at the start.
        mine = range(slot % users, len(sessions), users)
        schedule = self.replay.starts
        span = max(schedule, default=0.0) + 1.0
        origin = time.perf_counter()
        while True:
            for i in mine:
                due = origin + (schedule[i] / speed if speed > 0 else 0.0)
                gevent.sleep(max(due - time.perf_counter(), 0))
                self.visits.spawn(self._replay, sessions[i], self._visitor(), due)
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
        """Send a session's steps in order; ``due`` is its intended start in the open models.

        Each step's request is built before its wait, so that it leaves when it is due. In
        the closed model the wait ends at a deadline: when the previous response ended plus
        the think time, so that the work between the response and the wait (checks,
        extraction, the stats event) and a late wake-up are not added on top of it.
        """
        tally = self.log.session(session.name)
        tally.started += 1
        if session.missing is not None:
            self._fail_unsendable(session, tally, session.missing)
            return
        values = list(session.initial)
        live = list(session.live)
        for var, column in session.data:
            values[var], live[var] = self.row[column], True
        sender = self.sender if client is self.client else Sender(
            client, self.environment.events.request.fire, self.network_timeout, self.connection_timeout)
        state = (session, client, sender, values, live, tally)
        failed = False
        began = answered = time.perf_counter()
        steps = session.steps
        parallel = self.settings.parallel_overlaps
        i, n = 0, len(steps)
        while i < n:
            step = steps[i]
            request = self._request(state, step)
            if due is None:
                if step.think:
                    _sleep_until(answered + step.think)
            else:
                _sleep_until(due + step.at)
            if parallel and i + 1 < n and steps[i + 1].overlaps:
                j = i + 1
                while j < n and steps[j].overlaps:
                    j += 1
                # The browser sent these before the first had its answer: send them alongside it.
                others = [gevent.spawn(self._send_at, state, s, time.perf_counter() + s.at - step.at, due)
                          for s in steps[i + 1:j]]
                failed |= self._send(state, step, request, due)
                gevent.joinall(others)
                failed |= any(g.value for g in others)
                answered = time.perf_counter()
                i = j
                continue
            failed |= self._send(state, step, request, due)
            answered = time.perf_counter()
            i += 1
        tally.ended(time.perf_counter() - began, failed)

    def _send_at(self, state: tuple[Any, ...], step: Step, deadline: float, due: float | None) -> bool:
        _sleep_until(deadline)
        return self._send(state, step, self._request(state, step), due)

    def _request(self, state: tuple[Any, ...], step: Step) -> Outgoing | None:
        """What to send for one step (URL, headers, body) with the live values so far; None when it is skipped."""
        if step.skip is not None:
            return None
        if step.patch is not None:
            session, _client, _sender, values, live, tally = state
            return self._patched(session, tally, step, values, live)
        return step.url, step.headers, step.body

    def _send(self, state: tuple[Any, ...], step: Step, request: Outgoing | None,
              due: float | None) -> bool:
        """Send one step's ``request``; True when it failed."""
        _session, client, sender, values, live, tally = state
        if request is None:  # skipped
            self.log.skip(tally, step.skip or "")
            return False
        url, headers, body = request
        failed: bool
        response, failed = sender(step, url, headers, body)
        status = response.status_code
        if status:
            header = response.headers.get
            content = response.content
            self.log.check(tally, step, status, header, content)
            if step.extract:
                view = ResponseView(header, content, lambda name: _cookie(client, name))
                for var, extract in step.extract:
                    found = extract(view)
                    if found is not None:
                        values[var], live[var] = found, True
        if due is not None:
            self.log.intended(step.method, step.name, (time.perf_counter() - due - step.at) * 1000)
        return failed

    def _patched(self, session: PreparedSession, tally: SessionTally, step: Step,
                 values: list[str], live: list[bool]) -> Outgoing:
        patch = step.patch
        assert patch is not None
        for var in patch.variables:
            if not live[var]:
                self.log.sent_unsourced(tally, session.name, step.index, session.initial[var])
        url = patch.url_prefix + patch.path.render(values) if patch.path is not None else step.url
        headers: Headers | dict[str, str] = step.headers
        if patch.headers:
            headers = dict(headers)
            for name, template in patch.headers:
                headers[name] = wire(template.render(values))
        body = patch.body.render(values).encode() if patch.body is not None else step.body
        return url, headers, body

    def _fail_unsendable(self, session: PreparedSession, tally: SessionTally, reason: str) -> None:
        first = session.steps[0]
        self.environment.events.request.fire(request_type=first.method, name=first.name, response_time=0,
                                             response_length=0, exception=CatchResponseError(reason), context={})
        tally.failed += 1  # no duration: nothing was sent
        # A missing secret fails every time: pace the failures instead of spinning on them.
        gevent.sleep(1.0)


@functools.cache
def _settle() -> None:
    """Once per process, as its first user starts: what is loaded by now (the prepared sessions,
    Locust, the libraries) moves out of the garbage collector's reach. A full collection would
    otherwise walk all of it, tens of milliseconds for a small recording and more for a large
    one, while every user waits; they live as long as the process anyway."""
    gc.freeze()


_HALF_TICK_S = 0.0005
"""libev rounds each wait up to a whole millisecond (epoll_wait takes milliseconds): a wait
ends between 0 and 1 ms late. Aiming half a millisecond early centres that on the deadline."""


def _sleep_until(deadline: float) -> None:
    """Wait until ``deadline`` (``time.perf_counter()``), give or take half a millisecond; at once
    when it is that close or has passed."""
    remaining = deadline - time.perf_counter() - _HALF_TICK_S
    if remaining > 0:
        gevent.sleep(remaining)


def _cookie(client: FastHttpSession, name: str) -> str | None:
    found = None
    for cookie in client.cookiejar:
        if cookie.name == name:
            found = cookie.value
    return found
