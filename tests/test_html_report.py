"""The HTML report of one run: opened in Debian's chromium with every request outside the file refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Dialog, Error, Page, Request, Route, sync_playwright

from traffic_replay.htmlreport import render_html, write_html
from traffic_replay.summary import (
    Divergence,
    EndpointStats,
    FailureStats,
    Sample,
    SessionRow,
    SessionStats,
    Summary,
    ThresholdVerdict,
    UnsourcedValue,
    WorkerStats,
)

from processes import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'

RPS = [0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]  # peak 100: the axis tops at 100
USERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]  # peak 10: the axis tops at 10
P99 = [100.0 + 60 * i for i in range(12)]  # peak 760: the axis tops at 800 (steps of 200)


def endpoint(method: str, name: str, requests: int, p95: float, recorded_p95: float | None = None,
             failures: int = 0) -> EndpointStats:
    return EndpointStats(method=method, name=name, requests=requests, failures=failures, median_ms=p95 / 3,
                         p95_ms=p95, p99_ms=p95 * 1.5, avg_ms=p95 / 2, max_ms=p95 * 2, rps=requests / 60,
                         recorded_requests=None if recorded_p95 is None else requests,
                         recorded_median_ms=None if recorded_p95 is None else recorded_p95 / 2,
                         recorded_p95_ms=recorded_p95)


def full_summary() -> Summary:
    history = [Sample(t_s=2.0 * i, users=USERS[i], rps=RPS[i], failures_per_s=RPS[i] / 10, p50_ms=P99[i] / 4,
                      p95_ms=P99[i] / 2, p99_ms=P99[i], sessions_completed=i, sessions_failed=i // 4)
               for i in range(12)]
    return Summary(
        host="http://127.0.0.1:8080", duration_s=22.0,
        endpoints=[endpoint("GET", "/api/items/{id}", 900, p95=310.0, recorded_p95=100.0, failures=3),
                   endpoint("POST", f"/search?q={IMG}", 300, p95=50.0, recorded_p95=80.0)],
        total=endpoint("", "Aggregated", 1200, p95=300.0, failures=3),
        sessions=SessionStats(started=40, completed=36, failed=3, median_s=4.2, p95_s=9.5),
        failures=[FailureStats(method="GET", name="/api/items/{id}", error=f"HTTPError {SCRIPT}", occurrences=3)],
        skipped={"host not allowed": 2},
        divergences=[Divergence(session="checkout", step=3, method="GET", name="/api/items/{id}",
                                what="status 500, recorded 200", occurrences=3)],
        unsourced=[UnsourcedValue(session="checkout", step=4, value=SCRIPT, occurrences=5)],
        workers=WorkerStats(took_part=2, lost=0, requests=[610, 590]),
        session_rows=[SessionRow(name="checkout", started=25, completed=22, failed=3, median_s=5.0, p95_s=9.5,
                                 first_divergence="step 3: status 500, recorded 200", unsourced=5),
                      SessionRow(name="browse", started=15, completed=14, failed=0, median_s=2.0, p95_s=3.0,
                                 skipped=2)],
        thresholds=[ThresholdVerdict(expression="p95<800ms", value=300.0, limit=800.0, unit="ms", ok=True,
                                     detail="300 ms, 500 ms under"),
                    ThresholdVerdict(expression="p95[/api/items/{id}]<200ms", value=310.0, limit=200.0, unit="ms",
                                     ok=False, detail="310 ms, 110 ms over")],
        history=history,
    )


def empty_summary() -> Summary:
    return Summary(host=None, duration_s=0.0, endpoints=[], total=endpoint("", "Aggregated", 0, p95=0.0),
                   sessions=SessionStats(started=0, completed=0, failed=0), failures=[])


@dataclass
class Opened:
    """A page and what it tried: every request, those refused, and every error it showed."""

    page: Page
    requests: list[str] = field(default_factory=list)  # every request the page made, blocked or not
    refused: list[str] = field(default_factory=list)  # those outside the file, aborted
    errors: list[str] = field(default_factory=list)  # console errors (a CSP refusal is one), page errors, dialogs

    def route(self, route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def request(self, request: Request) -> None:
        self.requests.append(request.url)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def page_error(self, error: Error) -> None:
        self.errors.append(str(error))

    def dialog(self, dialog: Dialog) -> None:
        self.errors.append(f"dialog: {dialog.message}")
        dialog.dismiss()


@contextmanager
def opened(path: Path) -> Iterator[Opened]:
    """The report in headless chromium, offline: anything but a file:// URL is aborted and recorded."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium (never a downloaded one)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            seen = Opened(page)
            page.route("**/*", seen.route)
            page.on("request", seen.request)
            page.on("console", seen.console)
            page.on("pageerror", seen.page_error)
            page.on("dialog", seen.dialog)
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            yield seen
        finally:
            browser.close()


def points(page: Page, chart: str, series: str) -> list[tuple[float, float]]:
    raw = page.get_attribute(f'svg.chart[data-chart="{chart}"] [data-series="{series}"]', "points")
    assert raw is not None
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in raw.split())]


def plot_area(page: Page, chart: str) -> tuple[float, float, float, float]:
    box = page.locator(f'svg.chart[data-chart="{chart}"] rect.axis')
    x, y, width, height = (float(box.get_attribute(a) or "nan") for a in ("x", "y", "width", "height"))
    return x, y, width, height


def y_labels(page: Page, chart: str) -> list[str]:
    return page.locator(f'svg.chart[data-chart="{chart}"] text.y-tick').all_text_contents()


def cells(page: Page, table: str) -> list[list[str]]:
    return [row.locator("td").all_inner_texts() for row in page.locator(f"table#{table} tbody tr").all()]


@pytest.mark.timeout(60)
def test_the_report_opens_offline_and_shows_the_run(tmp_path: Path) -> None:
    summary = full_summary()
    report = tmp_path / "report.html"
    write_html(summary, report)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # the temporary file is gone

    with opened(report) as seen:
        page = seen.page
        # Nothing but the file itself was asked for; nothing ran, nothing was refused by the page's policy.
        assert seen.requests == [report.as_uri()] and seen.refused == [] and seen.errors == []

        # Header.
        assert page.inner_text("#host") == "http://127.0.0.1:8080"
        assert page.inner_text("#duration") == "22.0 s"
        assert page.inner_text("#sessions").startswith("40 started, 36 completed, 3 failed")
        assert page.inner_text("#requests").startswith("1200 requests, 3 failures")
        assert page.inner_text("#verdict") == "1 broke (of 2)"

        # Charts: one point per sample, the y axis from 0 to the round number at or above the peak.
        assert page.locator("svg.chart").count() == 3
        expected = {("rps", "rps"): RPS, ("rps", "failures_per_s"): [v / 10 for v in RPS],
                    ("latency", "p50"): [v / 4 for v in P99], ("latency", "p95"): [v / 2 for v in P99],
                    ("latency", "p99"): P99, ("users", "users"): [float(u) for u in USERS]}
        tops = {"rps": 100.0, "latency": 800.0, "users": 10.0}
        for (chart, series), values in expected.items():
            drawn = points(page, chart, series)
            assert len(drawn) == len(summary.history), (chart, series)
            x0, y0, width, height = plot_area(page, chart)
            times = [s.t_s for s in summary.history]
            for (x, y), t, v in zip(drawn, times, values, strict=True):
                assert x == pytest.approx(x0 + t / times[-1] * width, abs=0.1)
                assert y == pytest.approx(y0 + height - v / tops[chart] * height, abs=0.1)
        assert y_labels(page, "rps")[-1] == "100/s" and y_labels(page, "rps")[0] == "0/s"
        assert y_labels(page, "latency") == ["0 ms", "200 ms", "400 ms", "600 ms", "800 ms"]
        assert y_labels(page, "users")[-1] == "10 users"
        x_labels = page.locator('svg.chart[data-chart="rps"] text.x-tick').all_text_contents()
        assert x_labels[0] == "0 s" and len(x_labels) >= 3 and all(t.endswith(" s") for t in x_labels)
        assert page.locator("svg.chart .note").count() == 0

        # Endpoints, the aggregated row last; the ratio only where the recording has a p95.
        rows = cells(page, "endpoints")
        assert [r[:4] for r in rows] == [["GET", "/api/items/{id}", "900", "3"],
                                         ["POST", f"/search?q={IMG}", "300", "0"],
                                         ["", "Aggregated", "1200", "3"]]
        assert [r[8:] for r in rows] == [["50", "100", "3.1x"], ["40", "80", "0.6x"], ["–", "–", "–"]]
        assert page.locator("table#endpoints tbody tr").last.get_attribute("class") == "total"

        assert cells(page, "thresholds") == [
            ["p95<800ms", "300ms", "800ms", "pass", "300 ms, 500 ms under"],
            ["p95[/api/items/{id}]<200ms", "310ms", "200ms", "FAIL", "310 ms, 110 ms over"]]
        assert cells(page, "sessions") == [
            ["checkout", "25", "22", "3", "5.0 s", "9.5 s", "step 3: status 500, recorded 200", "5", "0"],
            ["browse", "15", "14", "0", "2.0 s", "3.0 s", "–", "0", "2"]]
        assert cells(page, "divergences") == [["checkout", "3", "GET /api/items/{id}", "status 500, recorded 200", "3"]]
        assert cells(page, "skipped") == [["host not allowed", "2"]]
        assert page.inner_text("#workers") == "2 took part, 0 lost; requests by worker: 610, 590"

        # The untrusted texts are text, never elements.
        assert cells(page, "unsourced") == [["checkout", "4", SCRIPT, "5"]]
        assert cells(page, "failures")[0][2] == f"HTTPError {SCRIPT}"
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(tmp_path / "html_report.png"), full_page=True)
        shutil.copyfile(tmp_path / "html_report.png", ARTIFACTS / "html_report.png")
    assert SCRIPT not in report.read_text() and IMG not in report.read_text()


@pytest.mark.timeout(60)
def test_an_empty_run_opens_with_empty_charts(tmp_path: Path) -> None:
    report = tmp_path / "empty.html"
    write_html(empty_summary(), report)
    with opened(report) as seen:
        page = seen.page
        assert seen.requests == [report.as_uri()] and seen.errors == []
        assert page.inner_text("#host") == "target"
        assert page.locator("svg.chart").count() == 3
        assert page.locator("svg.chart .note").all_text_contents() == ["no samples"] * 3
        assert page.locator("svg.chart polyline").count() == 0
        assert cells(page, "endpoints") == [["", "Aggregated", "0", "0", "0.0", "0.0", "0.0", "0.0", "–", "–", "–"]]
        assert page.locator("table#thresholds, #verdict, table#divergences, #workers").count() == 0
        page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)


@pytest.mark.timeout(60)
def test_the_harness_sees_a_page_that_reaches_out(tmp_path: Path) -> None:
    """Without this, an empty request list could mean the recording missed them."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><link rel="stylesheet" href="https://cdn.invalid/x.css">'
                     '<img src="http://127.0.0.1:9/x.png"><script>alert(1)</script>')
    with opened(leaky) as seen:
        assert seen.requests[0] == leaky.as_uri()
        assert set(seen.refused) >= {"https://cdn.invalid/x.css", "http://127.0.0.1:9/x.png"}
        assert "dialog: 1" in seen.errors


def test_one_sample_is_one_point_and_no_division_by_zero() -> None:
    summary = full_summary().model_copy(update={"history": full_summary().history[-1:]})
    html = render_html(summary)
    assert html.count('data-samples="1"') == 3 and html.count("<polyline") == 6
    for chart in ("rps", "latency", "users"):
        assert f'data-chart="{chart}"' in html
    assert "no samples" not in html


def test_a_rewrite_replaces_the_report_whole(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    write_html(full_summary(), report)
    write_html(empty_summary(), report)
    assert "no samples" in report.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.timeout(90)
def test_a_real_runs_report_draws_its_own_history(demo_target: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import orjson

    from traffic_replay.redacted import DEMO_SECRETS, read_env_file

    bundled = REPO_ROOT / "recordings"
    report, summary_file = tmp_path / "run.html", tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "traffic_replay.cli", "run", str(bundled), "--host", demo_target, "-u", "4", "-r", "4",
         "-t", "4s", "--headless", "--speed", "0", "--no-check", "--html", str(report),
         "--summary-json", str(summary_file), "--fail-on", "errors<1%"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env={**os.environ, **read_env_file(bundled / DEMO_SECRETS)})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = orjson.loads(summary_file.read_bytes())
    assert len(summary["history"]) >= 3
    with opened(report) as seen:
        page = seen.page
        assert seen.refused == [] and seen.errors == []
        for chart, series in (("rps", "rps"), ("latency", "p95"), ("users", "users")):
            assert len(points(page, chart, series)) == len(summary["history"])
        rows = cells(page, "endpoints")
        assert [r[1] for r in rows] == [e["name"] for e in summary["endpoints"]] + ["Aggregated"]
        assert any(r[-1].endswith("x") for r in rows), "recorded against replayed, from the session files"
        assert [r[0] for r in cells(page, "thresholds")] == ["errors<1%"]
        assert len(cells(page, "sessions")) == len(summary["session_rows"])
        artifacts = REPO_ROOT / "tests" / "artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "html_report_run.png"), full_page=True)
