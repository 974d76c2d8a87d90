"""Replay recorded sessions with Locust: ``replay run`` uses this file, and so can you.

    REPLAY_RECORDINGS=recordings/ locust -f replayer/locustfile.py --host http://127.0.0.1:8000

Settings come from ``REPLAY_*`` environment variables (see README), or as ``replay run``
hands them over. Each virtual user (``replayer.user``) picks a session by weight, sends its
requests in order with the recorded think time divided by ``REPLAY_SPEED``, keeps its own
cookies, carries the values the server hands out (tokens, ids) into the requests that
follow, and never follows redirects itself.

Set up per runner type in ``events.init``, as Locust's ``examples/custom_messages.py``
does: the master reads the payload once and ships it (``replayer.shipping``); a worker
asks for it and prepares it (``replayer.receiving``); a local run is both, and sends the
payload to itself (``LocalRunner.send_message`` calls the handler in-process), so that
one process, ``--processes`` and real workers load through the same path.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, Runner, WorkerRunner

from replayer.loading import Replay
from replayer.receiving import Receiving
from replayer.report import build_summary, report, session_rows
from replayer.shipping import Shipping
from replayer.user import ReplayUser
from replayer.watching import Watch
from replayer.weblogin import add_login
from replayer.webui import add_sessions_tab
from traffic_replay.errors import ReplayError, exit_with
from traffic_replay.payload import Payload, read_workload, take_over
from traffic_replay.settings import Settings
from traffic_replay.summary import Summary

__all__ = ["ReplayUser"]

logger = logging.getLogger(__name__)


def _payload(settings: Settings) -> Payload:
    """What ``replay run`` read and handed over, or (under plain ``locust``) the inputs read here, once."""
    try:
        return take_over() or Payload.of(read_workload(settings))
    except ReplayError as e:
        exit_with(e)


def _configure_users(replay: Replay) -> None:
    """Once the payload is in: the users' own settings are the master's."""
    # A stalled target must show up as failures, not as requests that never end. Each socket
    # operation is bounded here; the whole request (a body dribbled a byte at a time) by the Sender.
    settings = replay.settings
    ReplayUser.network_timeout = settings.timeout
    ReplayUser.connection_timeout = min(settings.connect_timeout or settings.timeout, settings.timeout)
    logger.info(replay.describe())


def _ship(environment: Environment, runner: Runner, settings: Settings) -> Shipping:
    """The master's part (or a local run's): the payload out, the workers' logs in, the run watched and reported."""
    shipping = Shipping(runner, _payload(settings))
    log = ReplayUser.replay.log
    environment.events.worker_report.add_listener(lambda client_id, data, **kw: log.add(data.get("replay", {})))

    def summary() -> Summary:
        return build_summary(environment, log, shipping.workers())
    watch = Watch(environment, log, settings, summary)
    add_login(environment, settings.web_user)
    add_sessions_tab(environment, lambda: session_rows(log))  # not the whole summary at every poll
    if settings.prometheus_port is not None:
        from replayer.metrics import serve_metrics

        try:
            serve_metrics(environment, log, settings)
        except ReplayError as e:
            exit_with(e)
    environment.events.quitting.add_listener(
        lambda environment, **kw: report(environment, log, settings, shipping.payload, shipping.workers(),
                                         watch.samples))
    return shipping


def _receive(environment: Environment, runner: Runner, settings: Settings) -> Receiving:
    receiving = ReplayUser.receiving = Receiving(runner, ReplayUser.replay, settings, _configure_users)
    if isinstance(runner, WorkerRunner):
        environment.events.report_to_master.add_listener(
            lambda client_id, data, **kw: data.__setitem__("replay", ReplayUser.replay.log.take()))
    return receiving


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    try:
        settings = Settings.of_process()
    except ReplayError as e:  # a bad REPLAY_* variable under plain locust: one line, not a traceback
        exit_with(e)
    logging.getLogger("replayer").setLevel(logging.DEBUG if settings.debug else logging.INFO)
    if environment.host is None and settings.host:
        environment.host = settings.host
    ReplayUser.replay = Replay(settings)
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _ship(environment, runner, settings)
    elif isinstance(runner, WorkerRunner):
        _receive(environment, runner, settings).ask_for_payload()
    elif isinstance(runner, LocalRunner):
        _ship(environment, runner, settings)
        receiving = _receive(environment, runner, settings)
        receiving.ask_for_payload()  # answered in-process, before this returns
        if receiving.failed is not None:
            exit_with(receiving.failed)
        # gevent's loop caches "now"; Locust arms its --run-time timer right after this listener, and
        # with the time spent loading still unaccounted the timer would fire that much too early.
        gevent.get_hub().loop.update_now()


events.init.add_listener(_on_init)
