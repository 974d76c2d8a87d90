"""Prometheus metrics of a run, served by the master (or the single process) on ``--prometheus-port``.

Nothing is counted twice: a collector reads, at scrape time, the same two sources as the
summary at the end, Locust's request stats (on a master, its workers' merged) and the
run log (``replayer.runlog``). So the counters of the last scrape are the summary's
figures, and the replay loop does no work for the metrics at all.

The endpoint is prometheus-client's WSGI app on gevent's WSGI server, in this process's
own loop. With ``--prometheus-linger`` it stays up that long after the run, once the
summary is written and the runner has quit, so that a last scrape sees the final figures.

    replay_requests_total{method,name}              requests sent (failures included)
    replay_request_failures_total{method,name}      of those, failed
    replay_request_duration_seconds{method,name}    histogram of response times
    replay_users, replay_workers                     running users, connected workers
    replay_sessions_{started,completed,failed}_total{session}
    replay_divergences_total{session}, replay_unsourced_total{session}
    replay_skipped_steps_total{reason}
    replay_run_info{host,version}, replay_run_state{state}
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Iterable, Iterator

from gevent.event import Event
from gevent.pywsgi import WSGIServer
from locust.env import Environment
from locust.runners import (
    STATE_CLEANUP,
    STATE_INIT,
    STATE_MISSING,
    STATE_RUNNING,
    STATE_SPAWNING,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
)
from locust.stats import StatsEntry
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from replayer.runlog import RunLog
from traffic_replay import __version__
from traffic_replay.errors import ConfigError
from traffic_replay.settings import Settings

logger = logging.getLogger(__name__)

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds of the response time histogram: loopback-fast to the default request timeout."""

STATES = (STATE_INIT, STATE_SPAWNING, STATE_RUNNING, STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED, STATE_MISSING)


def buckets(response_times: dict[int, int], requests: int) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs from Locust's {rounded ms: count}; a request without a time counts in +Inf only."""
    pairs, seen = [], 0
    times = iter(sorted(response_times.items()))
    pending = next(times, None)
    for bound in BUCKETS_S:
        while pending is not None and pending[0] <= bound * 1000:
            seen += pending[1]
            pending = next(times, None)
        pairs.append((repr(bound), float(seen)))
    pairs.append(("+Inf", float(requests)))
    return pairs


class RunCollector:
    """Reads Locust's stats and the run log when Prometheus scrapes; keeps nothing of its own."""

    def __init__(self, environment: Environment, log: RunLog) -> None:
        self.environment, self.log = environment, log

    def collect(self) -> Iterator[Metric]:
        yield from self._requests(sorted(self.environment.stats.entries.values(), key=lambda e: (e.name, e.method)))
        yield from self._runner()
        yield from self._sessions()

    def _requests(self, entries: Iterable[StatsEntry]) -> Iterator[Metric]:
        labels = ["method", "name"]
        requests = CounterMetricFamily("replay_requests", "Requests sent, failures included.", labels=labels)
        failures = CounterMetricFamily("replay_request_failures", "Requests that failed.", labels=labels)
        durations = HistogramMetricFamily("replay_request_duration_seconds", "Response times.", labels=labels,
                                          unit="seconds")
        for e in entries:
            key = [e.method or "", e.name]
            requests.add_metric(key, e.num_requests)
            failures.add_metric(key, e.num_failures)
            durations.add_metric(key, buckets(e.response_times, e.num_requests), e.total_response_time / 1000)
        yield from (requests, failures, durations)

    def _runner(self) -> Iterator[Metric]:
        runner = self.environment.runner
        users = GaugeMetricFamily("replay_users", "Virtual users running.")
        users.add_metric([], runner.user_count if runner is not None else 0)
        workers = GaugeMetricFamily("replay_workers", "Workers connected to the master (0 in a local run).")
        workers.add_metric([], runner.worker_count if isinstance(runner, MasterRunner) else 0)
        state = GaugeMetricFamily("replay_run_state", "1 for the runner's current state.", labels=["state"])
        current = runner.state if runner is not None else STATE_INIT
        for name in STATES:
            state.add_metric([name], 1 if name == current else 0)
        info = GaugeMetricFamily("replay_run_info", "The run's target and traffic-replay's version.",
                                 labels=["host", "version"])
        info.add_metric([self.environment.host or "", __version__], 1)
        yield from (users, workers, state, info)

    def _sessions(self) -> Iterator[Metric]:
        labels = ["session"]
        started = CounterMetricFamily("replay_sessions_started", "Session replays started.", labels=labels)
        completed = CounterMetricFamily("replay_sessions_completed", "Session replays that ended well.", labels=labels)
        failed = CounterMetricFamily("replay_sessions_failed", "Session replays that ended failed.", labels=labels)
        divergences = CounterMetricFamily("replay_divergences", "Responses that differed from the recording at "
                                          "their session's first divergence.", labels=labels)
        unsourced = CounterMetricFamily("replay_unsourced", "Recorded values sent again for want of a live one.",
                                        labels=labels)
        for name, t in sorted(self.log.sessions.items()):
            started.add_metric([name], t.started)
            completed.add_metric([name], t.completed)
            failed.add_metric([name], t.failed)
            divergences.add_metric([name], t.divergence.occurrences if t.divergence is not None else 0)
            unsourced.add_metric([name], t.unsourced)
        skipped = CounterMetricFamily("replay_skipped_steps", "Steps never sent, by reason.", labels=["reason"])
        for reason, count in sorted(self.log.skipped.items()):
            skipped.add_metric([reason], count)
        yield from (started, completed, failed, divergences, unsourced, skipped)


def _listen(settings: Settings) -> socket.socket:
    """The endpoint's socket, bound; a port that cannot be had is a ConfigError naming the flag."""
    host, port = settings.prometheus_host, settings.prometheus_port
    assert port is not None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"--prometheus-host {host}: {e.strerror}") from e
    family, *_, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        what = "address in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise ConfigError(f"--prometheus-port {port} on {host}: {what}") from e
    return sock


def serve_metrics(environment: Environment, log: RunLog, settings: Settings) -> None:
    """Serve the run's metrics until the process ends, and ``settings.prometheus_linger`` seconds past the run;
    ``ConfigError`` when its address cannot be bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(environment, log))
    sock = _listen(settings)  # a ConfigError (port taken, bad host) is the caller's to report
    server = WSGIServer(sock, make_wsgi_app(registry), log=None, error_log=logger)
    server.start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info(f"Prometheus metrics on http://{shown}:{port}/metrics")
    if settings.prometheus_linger > 0:
        def linger_once(**_kw: object) -> None:
            environment.events.quit.remove_listener(linger_once)  # a SIGTERM while shutting down quits twice
            _linger(server, settings.prometheus_linger)

        environment.events.quit.add_listener(linger_once)


def _linger(server: WSGIServer, seconds: float) -> None:
    """Keep serving a while, at the very end: Locust fires ``quit`` after the ``quitting`` listeners (the
    summary among them), the runner's quit and its own tables, so nothing changes the figures any more."""
    logger.info(f"metrics stay up {seconds:g} s for a last scrape")
    # A SIGTERM (docker stop) or Ctrl-C ends the wait, and the process exits with the run's exit code.
    # Locust's own SIGTERM handler would shut down a second time: the summary again, and this wait again.
    done = Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait(seconds)
    except KeyboardInterrupt:
        pass
    server.stop(timeout=1)
