"""One run as a single HTML page: header, charts over time, and the summary's tables.

The page opens with no network at all: the CSS is inline, the charts are SVG drawn here, and
there is no script (a Content-Security-Policy says so to the browser too). Hover titles are
SVG ``<title>`` elements. Every text from the run passes through :func:`html.escape`: endpoint
names, recorded values and error messages come from recorded traffic and are untrusted.

Standard library only, plus the summary's models: this is core, loaded by neither runtime.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from traffic_replay.summary import EndpointStats, Sample, Summary, seconds

__all__ = ["render_html", "write_html"]

DASH = "–"  # a value that does not exist (nothing recorded, nothing measured)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;color:#222;margin:1.5em auto;max-width:1100px;padding:0 1em}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}
dl#overview{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0}dt{color:#666}dd{margin:0}
table{border-collapse:collapse;margin:.3em 0;font-variant-numeric:tabular-nums}
th,td{padding:.2em .6em;border-bottom:1px solid #e4e4e4;text-align:right;vertical-align:top}
th{background:#f4f4f4}.text{text-align:left}td.text{overflow-wrap:anywhere}
tr.total td{font-weight:600;border-top:2px solid #999}
.pass{color:#176b2c}.fail,.bad{color:#b00020;font-weight:600}
svg.chart{display:block;margin:.4em 0;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .note{font-size:14px;fill:#888}
svg .grid{stroke:#e8e8e8}svg .axis{stroke:#888}svg polyline{fill:none;stroke-width:1.6}
@media print{body{margin:0;max-width:none}svg.chart,table{break-inside:avoid}}
"""
# No script may run, nothing may load: the untrusted texts are escaped, and this holds even if one were not.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# Chart geometry, in SVG user units.
_W, _H = 760, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 16, 30, 36
_PW, _PH = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
_HOVER_LIMIT = 2000  # hover columns per chart; a longer run keeps its lines and loses the per-sample titles


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _num(value: float) -> str:
    """A tick or peak label: whole numbers plain, others with few decimals."""
    if value == int(value):
        return str(int(value))
    text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return text.rstrip("0").rstrip(".")


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _step(span: float, ticks: int, integer: bool) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) cutting ``span`` in about ``ticks`` parts."""
    raw = span / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    factors = (1.0, 2.0, 5.0, 10.0) if integer and magnitude < 10 else (1.0, 2.0, 2.5, 5.0, 10.0)
    step = next(f * magnitude for f in factors if f * magnitude >= raw * (1 - 1e-9))
    return max(step, 1.0) if integer else step


def nice_top(peak: float, integer: bool = False) -> tuple[float, float]:
    """(top of the y axis, tick step) for a series peaking at ``peak``; 1 when everything is zero."""
    if peak <= 0:
        return 1.0, (1.0 if integer else 0.25)
    step = _step(peak, 4, integer)
    return math.ceil(peak / step - 1e-9) * step, step


@dataclass(frozen=True)
class _Series:
    key: str
    label: str
    color: str
    values: list[float]


def _empty_chart(name: str, title: str) -> str:
    return (f'<svg class="chart" data-chart="{_e(name)}" data-samples="0" viewBox="0 0 {_W} {_H}" '
            f'width="{_W}" height="{_H}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
            f'<text x="{_LEFT}" y="18">{_e(title)}</text>'
            f'<rect class="axis" x="{_LEFT}" y="{_TOP}" width="{_PW}" height="{_PH}" fill="none"/>'
            f'<text class="note" x="{_LEFT + _PW / 2}" y="{_TOP + _PH / 2}" text-anchor="middle">no samples</text>'
            "</svg>")


def _chart(name: str, title: str, unit: str, times: list[float], series: list[_Series], integer: bool = False) -> str:
    """An SVG line chart: one polyline point per sample, y from 0 to a round number above the peak."""
    if not times:
        return _empty_chart(name, title)
    unit = unit if unit.startswith("/") else f" {unit}"  # "100/s", "800 ms"
    t0, t1 = times[0], times[-1]
    span = t1 - t0 if t1 > t0 else 1.0  # one sample: drawn at the left edge, no division by zero
    peak = max((v for s in series for v in s.values), default=0.0)
    top, ystep = nice_top(peak, integer)

    def x(t: float) -> float:
        return _LEFT + (t - t0) / span * _PW

    def y(v: float) -> float:
        return _TOP + _PH - v / top * _PH

    out = [f'<svg class="chart" data-chart="{_e(name)}" data-samples="{len(times)}" data-y-max="{_num(top)}" '
           f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" aria-label="{_e(title)}">'
           f"<title>{_e(title)}</title>", f'<text x="{_LEFT}" y="18">{_e(title)}</text>']
    legend_x = _LEFT + 200
    for s in series:
        out.append(f'<rect x="{legend_x}" y="10" width="12" height="3" fill="{s.color}"/>'
                   f'<text x="{legend_x + 16}" y="15">{_e(s.label)} (peak {_num(round(max(s.values), 1))})</text>')
        legend_x += 150
    for i in range(round(top / ystep) + 1):
        v = i * ystep
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + _PW}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                   f'<text class="y-tick" x="{_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f"{_num(v)}{_e(unit)}</text>")
    tstep = _step(span, 6, integer=False)
    first = math.ceil(t0 / tstep - 1e-9)
    for t in (i * tstep for i in range(first, math.floor(t1 / tstep + 1e-9) + 1)):  # no drift from adding steps
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_TOP}" y2="{_TOP + _PH}"/>'
                   f'<text class="x-tick" x="{x(t):.1f}" y="{_TOP + _PH + 16}" text-anchor="middle">{_num(t)} s</text>')
    out.append(f'<rect class="axis" x="{_LEFT}" y="{_TOP}" width="{_PW}" height="{_PH}" fill="none"/>')
    for s in series:
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, s.values, strict=True))
        out.append(f'<polyline data-series="{_e(s.key)}" stroke="{s.color}" points="{points}">'
                   f"<title>{_e(s.label)}</title></polyline>")
        if len(times) == 1:  # a line of one point draws nothing: mark it
            out.append(f'<circle cx="{x(t0):.1f}" cy="{y(s.values[0]):.1f}" r="3" fill="{s.color}"/>')
    if len(times) <= _HOVER_LIMIT:
        out.append(_hover_columns(times, series, unit, x))
    out.append("</svg>")
    return "".join(out)


def _hover_columns(times: list[float], series: list[_Series], unit: str, x: Callable[[float], float]) -> str:
    """A transparent column around each sample whose title lists every series' value there."""
    out = ['<g class="hover">']
    xs = [x(t) for t in times]
    for i, t in enumerate(times):
        left = _LEFT if i == 0 else (xs[i - 1] + xs[i]) / 2
        right = _LEFT + _PW if i == len(times) - 1 else (xs[i] + xs[i + 1]) / 2
        lines = [f"t = {_num(round(t, 1))} s"] + [f"{s.label}: {_num(round(s.values[i], 1))}{unit}" for s in series]
        out.append(f'<rect x="{left:.1f}" y="{_TOP}" width="{max(right - left, 0.5):.1f}" height="{_PH}" '
                   f'fill="transparent"><title>{_e(chr(10).join(lines))}</title></rect>')
    out.append("</g>")
    return "".join(out)


def _charts(history: list[Sample]) -> str:
    times = [_finite(s.t_s) for s in history]

    def values(field: str) -> list[float]:
        return [_finite(float(getattr(s, field))) for s in history]

    return "".join([
        _chart("rps", "Requests and failures per second", "/s", times, [
            _Series("rps", "requests/s", "#1f6fb4", values("rps")),
            _Series("failures_per_s", "failures/s", "#c62828", values("failures_per_s"))]),
        _chart("latency", "Response time percentiles", "ms", times, [
            _Series("p50", "p50", "#2e7d32", values("p50_ms")),
            _Series("p95", "p95", "#ef8f00", values("p95_ms")),
            _Series("p99", "p99", "#8e24aa", values("p99_ms"))]),
        _chart("users", "Users", "users", times, [_Series("users", "users", "#455a64", values("users"))],
               integer=True),
    ])


def _table(id_: str, heads: Sequence[str], rows: Iterable[Sequence[object]], text_columns: Iterable[int] = (),
           row_class: Callable[[int], str] | None = None) -> str:
    """A table whose cells are escaped; columns in ``text_columns`` align left, the rest are numbers."""
    texts = set(text_columns)

    def cls(i: int) -> str:
        return ' class="text"' if i in texts else ""

    out = [f'<table id="{id_}"><thead><tr>', *(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(heads)),
           "</tr></thead><tbody>"]
    for n, row in enumerate(rows):
        extra = row_class(n) if row_class else ""
        out.append(f'<tr class="{extra}">' if extra else "<tr>")
        out.extend(f"<td{cls(i)}>{_e(cell)}</td>" for i, cell in enumerate(row))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def ratio(replayed_ms: float, recorded_ms: float | None) -> str:
    """'3.1x': replayed over recorded; a dash when nothing was recorded or the recording took no time."""
    if recorded_ms is None or not recorded_ms > 0 or not math.isfinite(replayed_ms):
        return DASH
    return f"{replayed_ms / recorded_ms:.1f}x"


def _endpoint_cells(row: EndpointStats) -> list[object]:
    def maybe(v: float | None) -> str:
        return DASH if v is None else _ms(v)
    return [row.method, row.name, row.requests, row.failures, _ms(row.median_ms), _ms(row.p95_ms), _ms(row.p99_ms),
            f"{row.rps:.1f}", maybe(row.recorded_median_ms), maybe(row.recorded_p95_ms),
            ratio(row.p95_ms, row.recorded_p95_ms)]


def _endpoints(summary: Summary) -> str:
    heads = ["method", "endpoint", "requests", "failures", "median ms", "p95 ms", "p99 ms", "req/s",
             "recorded median ms", "recorded p95 ms", "replayed/recorded p95"]
    rows = [_endpoint_cells(r) for r in [*summary.endpoints, summary.total]]
    last = len(rows) - 1
    return _table("endpoints", heads, rows, (0, 1), lambda n: "total" if n == last else "")


def _with_unit(value: float | None, unit: str) -> str:
    return DASH if value is None else f"{_num(round(value, 2))}{unit}"


def _thresholds(summary: Summary) -> str:
    rows = [[t.expression, _with_unit(t.value, t.unit), _with_unit(t.limit, t.unit), "pass" if t.ok else "FAIL",
             t.detail] for t in summary.thresholds]
    table = _table("thresholds", ["expression", "value", "limit", "verdict", "detail"], rows, (0, 3, 4),
                   lambda n: "pass" if summary.thresholds[n].ok else "fail")
    return f"<h2>Thresholds</h2>{table}"


def _verdict(summary: Summary) -> str:
    n, broke = len(summary.thresholds), sum(not t.ok for t in summary.thresholds)
    if not broke:
        return f'<dd id="verdict" class="pass">passed (all {n} held)</dd>'
    return f'<dd id="verdict" class="fail">{broke} broke (of {n})</dd>'


def _overview(summary: Summary) -> str:
    s, total = summary.sessions, summary.total
    share = f" ({total.failures / total.requests:.1%})" if total.requests else ""
    items = [
        ("host", summary.host or "target"),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("sessions", f"{s.started} started, {s.completed} completed, {s.failed} failed;"
                     f" duration median {seconds(s.median_s)}, p95 {seconds(s.p95_s)}"),
        ("requests", f"{total.requests} requests, {total.failures} failures{share}, {total.rps:.1f} req/s"),
    ]
    out = ['<dl id="overview">', *(f'<dt>{_e(k)}</dt><dd id="{k}">{_e(v)}</dd>' for k, v in items)]
    if summary.thresholds:
        out.append(f"<dt>thresholds</dt>{_verdict(summary)}")
    out.append("</dl>")
    return "".join(out)


def _sessions(summary: Summary) -> str:
    if not summary.session_rows:
        return '<h2>Sessions</h2><p id="sessions">No per-session results.</p>'
    rows = [[r.name, r.started, r.completed, r.failed, seconds(r.median_s), seconds(r.p95_s),
             r.first_divergence or DASH, r.unsourced, r.skipped] for r in summary.session_rows]
    heads = ["session", "started", "completed", "failed", "median s", "p95 s", "first divergence", "unsourced",
             "skipped"]
    return f'<h2>Sessions</h2>{_table("sessions", heads, rows, (0, 6))}'


def _details(summary: Summary) -> str:
    """Divergences, unsourced values, failures, skipped steps and workers: each only when there are some."""
    out = []
    if summary.divergences:
        rows = [[d.session, d.step, f"{d.method} {d.name}", d.what, d.occurrences] for d in summary.divergences]
        out.append("<h2>Divergences from the recording (first per session)</h2>"
                   + _table("divergences", ["session", "step", "request", "what differs", "count"], rows, (0, 2, 3)))
    if summary.unsourced:
        rows = [[u.session, u.step, u.value, u.occurrences] for u in summary.unsourced]
        out.append("<h2>Recorded values sent again without a live source</h2>"
                   + _table("unsourced", ["session", "step", "value", "count"], rows, (0, 2)))
    if summary.failures:
        rows = [[f.method, f.name, f.error, f.occurrences] for f in summary.failures]
        out.append("<h2>Failures</h2>" + _table("failures", ["method", "endpoint", "error", "count"], rows, (0, 1, 2)))
    if summary.skipped:
        out.append("<h2>Skipped, never sent</h2>"
                   + _table("skipped", ["reason", "steps"], list(summary.skipped.items()), (0,)))
    if summary.workers is not None:
        w = summary.workers
        by_worker = ", ".join(str(n) for n in w.requests) or DASH
        out.append(f'<h2>Workers</h2><p id="workers">{w.took_part} took part, {w.lost} lost;'
                   f" requests by worker: {_e(by_worker)}</p>")
    return "".join(out)


def render_html(summary: Summary) -> str:
    """The whole report as one HTML document, needing nothing but itself to open."""
    title = f"Replay of {summary.host or 'target'} for {summary.duration_s:.1f} s"
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # else the browser asks for /favicon.ico
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>{_overview(summary)}</header>",
        f'<h2>Over time</h2><section id="charts">{_charts(summary.history)}</section>',
        f"<h2>Endpoints</h2>{_endpoints(summary)}",
        _thresholds(summary) if summary.thresholds else "",
        _sessions(summary),
        _details(summary),
        f"<footer><p>traffic-replay summary format {summary.format_version}</p></footer></body></html>\n",
    ])


def write_html(summary: Summary, path: Path) -> None:
    """Write the report atomically: a temporary file beside ``path``, then one rename over it."""
    text = render_html(summary)  # before the temporary file exists: a failure here leaves nothing behind
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
