"""docker/monitoring/: the dashboard asks only for metrics a real run serves; the monitoring profile holds together.

The metric names are taken from a scrape of a real short run, not from a list kept here. The
profile's images (Prometheus, Grafana) are not pulled: ``docker compose config`` checks it
without an engine.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from engine import COMPOSE_FILE, HOSTNET_FILE, assert_loopback_only, clean_env, compose_cli, run
from processes import REPO_ROOT
from scraping import MetricsRun, served_names

MONITORING = REPO_ROOT / "docker" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "traffic-replay.json"
DATASOURCE = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

# What a PromQL expression names besides metrics.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def _yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)  # label lists
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # ranges, $__rate_interval included
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", bare):
        if m.group(2) is None and m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_metric_names_parse() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, name) (rate(replay_x_bucket{name!~"/a(b)"}[$__rate_interval])))'
            " / on (name) sum(replay_y_total) > bool 0")
    assert metric_names(expr) == {"replay_x_bucket", "replay_y_total"}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for p in dashboard["panels"]:
        panels.extend(p.get("panels", []) if p["type"] == "row" else [p])
    return panels


@pytest.fixture
def served(demo_target: str) -> dict[str, str]:
    """Every name a real run's endpoint serves (histograms with their series), scraped once it has counted."""
    metrics_run = MetricsRun(demo_target, "-u", "2", "-r", "2", "-t", "3s", "--speed", "0", "--prometheus-port", "0")
    try:
        deadline = time.monotonic() + 20
        while not (families := metrics_run.scrape())["replay_requests"].samples:
            assert time.monotonic() < deadline, metrics_run.output[-3000:]
            time.sleep(0.2)
        assert metrics_run.wait(30) == 0, metrics_run.output[-3000:]
    finally:
        metrics_run.stop()
    return served_names(families)


@pytest.mark.timeout(60)
def test_the_dashboard_asks_for_served_metrics_only(served: dict[str, str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["refresh"] == "5s" and dashboard["time"] == {"from": "now-15m", "to": "now"}
    uid = _yaml(DATASOURCE)["datasources"][0]["uid"]
    used: set[str] = set()
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), panel["title"]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in targets:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            unknown = {n for n in names if n not in served}
            assert not unknown, f"{panel['title']}: {target['expr']} asks for {unknown}, not served"
            for name in names:
                family = re.sub(r"_(bucket|sum|count)$", "", name)
                assert family == name or served[name] == "histogram", name
                used.add(family if family != name else re.sub(r"_total$", "", name))
    # And every family the endpoint serves is on the dashboard.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in served}
    assert families - used == set(), f"served but not shown: {families - used}"
    assert len({p["id"] for p in panels}) == len(panels)


def _config(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = [a for f in files for a in ("-f", str(f))]
    out = run([compose_cli(), "--env-file", os.devnull, *args, "--profile", "monitoring", "config", "--format", "json"],
              timeout=30, env=clean_env(**(env or {}))).stdout
    config: dict[str, Any] = json.loads(out)
    return config


@pytest.mark.timeout(60)
def test_the_monitoring_profile_holds_together() -> None:
    config = _config(COMPOSE_FILE)
    services = config["services"]
    assert {"master", "worker", "target", "prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        assert service["pull_policy"] == "missing", name
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), service["image"]  # pinned
        assert [(p["host_ip"]) for p in service["ports"]] == ["127.0.0.1"], service["ports"]
        # Every file mounted from the repo exists, and every provisioning file is mounted.
        binds = [Path(v["source"]) for v in service["volumes"] if v["type"] == "bind"]
        assert binds and all(b.exists() and b.is_relative_to(MONITORING) for b in binds), binds
    master = services["master"]["environment"]
    interval = re.search(r"scrape_interval: (\d+)s", (MONITORING / "prometheus.yml").read_text())
    assert interval is not None
    # Up long enough after the run for one more scrape: the final figures reach Prometheus.
    assert master["REPLAY_PROMETHEUS_PORT"] == "9646"
    assert float(master["REPLAY_PROMETHEUS_LINGER"]) > int(interval.group(1))
    mounted = {Path(v["source"]) for s in ("prometheus", "grafana") for v in services[s]["volumes"]
               if v["type"] == "bind"}
    for f in (MONITORING / "grafana").rglob("*"):
        if f.is_file():
            assert any(f.is_relative_to(m) for m in mounted), f"{f} is not mounted"
    # Prometheus scrapes the master on the port the master serves.
    scrape = _yaml(MONITORING / "prometheus.yml")["scrape_configs"]
    assert [t for job in scrape for c in job["static_configs"] for t in c["targets"]] == [
        f"master:{master['REPLAY_PROMETHEUS_PORT']}"]
    assert services["grafana"]["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"

    # With the host-network override: everything on loopback, `master` and `prometheus` this machine.
    config = _config(COMPOSE_FILE, HOSTNET_FILE, env={"REPLAY_PROMETHEUS_SERVER_PORT": "19090"})
    assert_loopback_only(config)
    services = config["services"]
    assert services["master"]["environment"]["REPLAY_PROMETHEUS_HOST"] == "127.0.0.1"
    assert services["prometheus"]["extra_hosts"] == ["master=127.0.0.1"]
    assert "--web.listen-address=127.0.0.1:19090" in services["prometheus"]["command"]
    assert services["grafana"]["extra_hosts"] == ["prometheus=127.0.0.1"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert services["grafana"]["environment"]["PROMETHEUS_URL"] == "http://prometheus:19090"
