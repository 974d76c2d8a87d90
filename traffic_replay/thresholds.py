"""``--fail-on``: thresholds on a run's summary that decide its exit code, as k6's thresholds do.

    p95<500ms   p99[/api/orders/{id}]<800ms   errors<1%   rps>=200   sessions_failed==0

An expression is ``METRIC[SELECTOR] OP NUMBER[UNIT]``. The selector names an endpoint
as the replay's stats name it (``/items/{id}``, or ``GET /items/{id}`` for one method),
or a session by name for the session metrics; without one, the metric is the whole run's.
Parsed when the settings are built (a bad expression is one line before anything runs),
judged on the same ``Summary`` that is printed, so a verdict never disagrees with the table
beside it. Pure: no locust here.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection
from typing import Literal, NamedTuple

from traffic_replay.errors import THRESHOLD_BROKE
from traffic_replay.summary import EndpointStats, Summary, ThresholdVerdict

EXIT_CODE = THRESHOLD_BROKE
"""The exit code of a run that broke a threshold (the table of them all: ``traffic_replay.errors``)."""

Kind = Literal["latency", "ratio", "count", "rate"]
Scope = Literal["endpoint", "session"]


class _Metric(NamedTuple):
    kind: Kind
    scope: Scope
    worsens: bool
    """Only ever grows during a run: once above a ``<``, ``<=`` or ``==`` limit it cannot come back."""
    help: str


_LATENCY = {"median": "median_ms", "p50": "median_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms",
            "avg": "avg_ms", "max": "max_ms"}
METRICS: dict[str, _Metric] = {
    **{name: _Metric("latency", "endpoint", False, "response time (ms or s)") for name in _LATENCY},
    "errors": _Metric("ratio", "endpoint", False, "failed requests, as a share of requests (% or a fraction)"),
    "failures": _Metric("count", "endpoint", True, "failed requests"),
    "requests": _Metric("count", "endpoint", False, "requests sent"),
    "rps": _Metric("rate", "endpoint", False, "requests per second over the run"),
    "sessions_started": _Metric("count", "session", False, "session replays begun"),
    "sessions_completed": _Metric("count", "session", False, "session replays ended with no failure"),
    "sessions_failed": _Metric("count", "session", True, "session replays ended with a failure"),
    "divergences": _Metric("count", "session", True, "responses that differed at their session's first divergence"),
    "unsourced": _Metric("count", "session", True, "recorded values sent again for want of a live one"),
    "skipped": _Metric("count", "session", True, "steps never sent (host safety, missing secrets)"),
}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_EXPRESSION = re.compile(
    r"^\s*(?P<metric>[a-z_0-9]+)\s*(?:\[(?P<selector>.+)\])?\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|%)?\s*$")


class Threshold(NamedTuple):
    """One parsed ``--fail-on`` expression."""

    expression: str
    metric: str
    selector: str | None
    op: str
    limit: float
    """In ``unit``: ms for latencies, % for errors, else a plain number."""
    unit: str

    @property
    def worsens_only(self) -> bool:
        """Once broken, it stays broken (``--fail-on-abort`` stops the run on it)."""
        return METRICS[self.metric].worsens and self.op in ("<", "<=", "==")


def parse_threshold(text: str) -> Threshold:
    """``p95<500ms``, ``errors[/login]<1%``, ``sessions_failed==0``; ``ValueError`` says what is wrong."""
    m = _EXPRESSION.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a threshold: write METRIC[ENDPOINT] OP NUMBER[UNIT], e.g. 'p95<500ms'")
    name, selector, op, number, unit = m.group("metric", "selector", "op", "number", "unit")
    metric = METRICS.get(name)
    if metric is None:
        raise ValueError(f"'{text}': no metric '{name}'; known: {', '.join(METRICS)}")
    limit = float(number)
    if metric.kind == "latency":
        if unit == "%":
            raise ValueError(f"'{text}': a response time is in ms or s, not %")
        limit, unit = (limit * 1000, "ms") if unit == "s" else (limit, "ms")
    elif metric.kind == "ratio":
        if unit in ("ms", "s"):
            raise ValueError(f"'{text}': errors are a share of requests (1% or 0.01), not a time")
        if unit is None:  # a fraction, as k6 writes its rates
            if limit > 1:
                raise ValueError(f"'{text}': a fraction of requests is at most 1; for a percentage write {number}%")
            limit *= 100
        unit = "%"
    elif unit is not None:
        raise ValueError(f"'{text}': {name} is {metric.help}, a plain number, not {unit}")
    else:
        unit = ""
    return Threshold(text.strip(), name, selector.strip() if selector else None, op, limit, unit)


def unknown_selectors(thresholds: Collection[Threshold], endpoints: Collection[tuple[str, str]],
                      sessions: Collection[str]) -> list[str]:
    """One line for each selector that names no recorded endpoint (method, stats name) or session."""
    names = {name for _, name in endpoints} | {f"{method} {name}" for method, name in endpoints}
    problems = []
    for t in thresholds:
        if t.selector is None:
            continue
        scope = METRICS[t.metric].scope
        known = names if scope == "endpoint" else set(sessions)
        if t.selector not in known:
            what = "endpoint" if scope == "endpoint" else "session"
            close = sorted(known, key=lambda k: _distance(k, t.selector or ""))[:3]
            problems.append(f"--fail-on '{t.expression}': no recorded {what} '{t.selector}'"
                            + (f" (closest: {', '.join(close)})" if close else ""))
    return problems


def _distance(a: str, b: str) -> int:
    from difflib import SequenceMatcher
    return -int(SequenceMatcher(None, a, b).ratio() * 1000)


def _endpoint(summary: Summary, selector: str | None) -> EndpointStats | None:
    if selector is None:
        return summary.total
    method, _, name = selector.partition(" ")
    rows = [e for e in summary.endpoints if e.name == selector or (name and e.method == method and e.name == name)]
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0]
    # The same name under several methods: their requests together; a latency of the slowest.
    requests, failures = sum(r.requests for r in rows), sum(r.failures for r in rows)
    slowest = max(rows, key=lambda r: r.p95_ms)
    return slowest.model_copy(update={"requests": requests, "failures": failures, "rps": sum(r.rps for r in rows)})


def measure(t: Threshold, summary: Summary) -> float | None:
    """The threshold's metric in this summary, in its unit; None when nothing was measured."""
    metric = METRICS[t.metric]
    if metric.scope == "endpoint":
        row = _endpoint(summary, t.selector)
        if row is None or (metric.kind in ("latency", "ratio") and not row.requests):
            return None
        if metric.kind == "latency":
            return float(getattr(row, _LATENCY[t.metric]))
        if t.metric == "errors":
            return 100.0 * row.failures / row.requests
        return float(row.requests if t.metric == "requests" else row.failures if t.metric == "failures" else row.rps)
    if t.selector is not None:
        taken = [r for r in summary.session_rows if r.name == t.selector]
        if not taken:
            return 0.0  # a session never taken: nothing started, failed or diverged
        one = taken[0]
        by_name = {"sessions_started": one.started, "sessions_completed": one.completed,
                   "sessions_failed": one.failed, "unsourced": one.unsourced, "skipped": one.skipped,
                   "divergences": sum(d.occurrences for d in summary.divergences if d.session == t.selector)}
        return float(by_name[t.metric])
    s = summary.sessions
    return float({"sessions_started": s.started, "sessions_completed": s.completed, "sessions_failed": s.failed,
                  "divergences": sum(d.occurrences for d in summary.divergences),
                  "unsourced": sum(u.occurrences for u in summary.unsourced),
                  "skipped": sum(summary.skipped.values())}[t.metric])


def _show(value: float, unit: str) -> str:
    text = f"{value:.0f}" if value == int(value) and abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def judge(t: Threshold, summary: Summary) -> ThresholdVerdict:
    """The verdict on one threshold: its value, whether it held, and by how much."""
    value = measure(t, summary)
    if value is None:
        return ThresholdVerdict(expression=t.expression, value=None, limit=t.limit, unit=t.unit, ok=False,
                                detail=f"{t.expression}: nothing measured (no request of {t.selector or 'the run'})")
    ok = _OPS[t.op](value, t.limit)
    gap = abs(value - t.limit)
    if t.op in ("==", "!="):
        how = "" if ok else f", limit {_show(t.limit, t.unit)}"
    else:
        relative = f" ({gap / t.limit:.0%})" if t.limit and t.unit != "%" else ""
        side = "over" if value > t.limit else "under" if value < t.limit else "at"
        how = f", {side} the limit of {_show(t.limit, t.unit)}" + (
            f" by {_show(gap, 'percentage points' if t.unit == '%' else t.unit)}{relative}" if gap else "")
    label = f"{t.metric}[{t.selector}]" if t.selector else t.metric
    return ThresholdVerdict(expression=t.expression, value=round(value, 3), limit=t.limit, unit=t.unit, ok=ok,
                            detail=f"{'ok' if ok else 'BROKE'} {t.expression}: {label} = {_show(value, t.unit)}{how}")


def judge_all(thresholds: Collection[Threshold], summary: Summary) -> list[ThresholdVerdict]:
    return [judge(t, summary) for t in thresholds]
