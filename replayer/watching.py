"""The run as it goes, once a second, on the master (or the single process): samples for the charts,
the live progress line, and ``--fail-on-abort``.

On a terminal the progress line is redrawn in place (rich's ``Live``, with the log lines
printed above it); without one, as in CI logs, a plain log line every ``PLAIN_EVERY_S``.
Locust's own periodic table stays off unless ``--locust-stats`` asks for it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import MasterRunner

from replayer.runlog import RunLog
from traffic_replay.settings import Settings
from traffic_replay.specs import parse_timespan
from traffic_replay.summary import Sample, Summary
from traffic_replay.thresholds import judge

logger = logging.getLogger(__name__)

EVERY_S = 1.0
PLAIN_EVERY_S = 10.0
RATE_SPAN_MASTER = 6
"""Samples a master's rates span: workers report every 3 s, so a one-second rate would be 0 or 3x."""
MAX_SAMPLES = 7200
"""Two hours at one a second; a longer run keeps every other sample (the charts stay the same shape)."""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else time.strftime("%H:%M:%S", time.gmtime(seconds))


class Watch:
    """Samples the run every second from its start; shows it; stops it when a threshold can no longer hold."""

    def __init__(self, environment: Environment, log: RunLog, settings: Settings,
                 summary: Callable[[], Summary]) -> None:
        self.environment, self.log, self.settings, self.summary = environment, log, settings, summary
        self.samples: list[Sample] = []
        self.started: float | None = None
        self.aborted: str | None = None
        """The verdict that ended the run early, if one did."""
        self._greenlet: gevent.Greenlet | None = None
        self._live: Any = None
        self._every = EVERY_S
        # (when, requests, failures) of the last few samples: rates are taken across them. A master
        # hears from its workers every few seconds, so its rates span two of their reports.
        self._counts: deque[tuple[float, int, int]] = deque(
            maxlen=RATE_SPAN_MASTER + 1 if isinstance(environment.runner, MasterRunner) else 2)
        self._run_time = _seconds(settings.run_time)
        self._abortable = [t for t in settings.fail_on if t.worsens_only] if settings.fail_on_abort else []
        environment.events.test_start.add_listener(self._start)
        environment.events.test_stop.add_listener(self._stop)
        environment.events.quitting.add_listener(self._stop)

    # Lifecycle --------------------------------------------------------------------

    def _start(self, **_kw: Any) -> None:
        if self._greenlet is not None:
            return
        self.started = time.time()
        total = self.environment.stats.total
        self._counts.append((time.monotonic(), total.num_requests, total.num_failures))
        # Under plain ``locust -f`` the flag is Locust's own, not a setting of ours.
        headless = self.settings.headless or bool(getattr(self.environment.parsed_options, "headless", False))
        if not self.settings.quiet and headless and sys.stderr.isatty():
            self._live = _live_line()
        self._greenlet = gevent.spawn(self._loop)

    def _stop(self, **_kw: Any) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        greenlet.kill(block=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _loop(self) -> None:
        last_plain = time.monotonic()
        while True:
            gevent.sleep(self._every)
            sample = self._sample()
            line = self._line(sample)
            if self._live is not None:
                self._live.update(line)
            elif not self.settings.quiet and time.monotonic() - last_plain >= PLAIN_EVERY_S:
                last_plain = time.monotonic()
                logger.info(line)
            if self._abortable and self._check_abort():
                return

    # What it does each second -------------------------------------------------------

    def _sample(self) -> Sample:
        environment = self.environment
        total = environment.stats.total
        runner = environment.runner
        log = self.log
        # Rates across the last samples, not Locust's ten-second window that lags two seconds behind.
        now, requests, failures = time.monotonic(), total.num_requests, total.num_failures
        self._counts.append((now, requests, failures))
        then, requests_then, failures_then = self._counts[0]
        span = now - then
        sample = Sample(
            t_s=round(time.time() - (self.started or time.time()), 2),
            users=runner.user_count if runner is not None else 0,
            rps=round((requests - requests_then) / span, 2) if span > 0 else 0.0,
            failures_per_s=round((failures - failures_then) / span, 2) if span > 0 else 0.0,
            p50_ms=total.get_current_response_time_percentile(0.5) or 0.0,
            p95_ms=total.get_current_response_time_percentile(0.95) or 0.0,
            p99_ms=total.get_current_response_time_percentile(0.99) or 0.0,
            sessions_completed=log.completed, sessions_failed=log.failed)
        self.samples.append(sample)
        if len(self.samples) > MAX_SAMPLES:
            self.samples = self.samples[::2]
            self._every *= 2
        return sample

    def _line(self, s: Sample) -> str:
        total = self.environment.stats.total
        elapsed = _clock(s.t_s) + (f"/{_clock(self._run_time)}" if self._run_time else "")
        runner = self.environment.runner
        workers = f", {runner.worker_count} workers" if isinstance(runner, MasterRunner) else ""
        return (f"{elapsed}  users {s.users}{workers}  {s.rps:.1f} req/s  requests {total.num_requests}"
                f"  failures {total.num_failures}  p95 {s.p95_ms:.0f} ms"
                f"  sessions {s.sessions_completed} completed, {s.sessions_failed} failed")

    def _check_abort(self) -> bool:
        summary = self.summary()
        for threshold in self._abortable:
            verdict = judge(threshold, summary)
            if not verdict.ok and verdict.value is not None:
                self.aborted = verdict.detail
                logger.error(f"{verdict.detail}; it cannot hold any more: ending the run (--fail-on-abort)")
                runner = self.environment.runner
                if runner is not None:
                    gevent.spawn(runner.quit)
                return True
        return False


def _seconds(run_time: str | None) -> float | None:
    return float(parse_timespan(run_time)) if run_time else None  # checked when the settings were built


def _live_line() -> Any:
    """A line redrawn in place at the bottom of the terminal, with the log's own lines printed above it."""
    from rich.console import Console
    from rich.live import Live

    live = Live("", console=Console(stderr=True), auto_refresh=False, redirect_stdout=True, redirect_stderr=True,
                transient=True)
    live.start()
    # The log's handlers hold the stream they were made with: give them the redirected one, so that
    # their lines go above the progress line instead of through it.
    moved = {}
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, sys.__stdout__):
            moved[handler] = handler.setStream(sys.stderr if handler.stream is sys.__stderr__ else sys.stdout)

    class _Line:
        def update(self, text: str) -> None:
            live.update(text, refresh=True)

        def stop(self) -> None:
            live.stop()
            for handler, stream in moved.items():
                handler.setStream(stream)
    return _Line()
