"""A real ``replay run`` with its Prometheus endpoint, scraped over HTTP: shared by the metrics and dashboard tests.

The run's output is read on a thread from the start (a full pipe would stall it), and the
endpoint's address is taken from the line the run logs once it is bound (``--prometheus-port 0``
is allowed, so no port is guessed).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from traffic_replay.redacted import DEMO_SECRETS, read_env_file

from processes import REPO_ROOT, start_process, stop_process

BUNDLED = REPO_ROOT / "recordings"
SERVING = r"Prometheus metrics on (http://\S+/metrics)"


class MetricsRun:
    """``replay run RECORDINGS --host TARGET --headless ARGS`` with the demo password, until it ends."""

    def __init__(self, target: str, *args: str, recordings: Path = BUNDLED, timeout: float = 30) -> None:
        cmd = [sys.executable, "-m", "traffic_replay.cli", "run", str(recordings), "--host", target, "--headless",
               "--no-check", *args]
        self.proc, match = start_process(cmd, SERVING, timeout=timeout, merge_stderr=True,
                                         env=read_env_file(BUNDLED / DEMO_SECRETS))
        self.url: str = match.group(1)
        self.lines: list[str] = [match.string]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def scrape(self) -> dict[str, Any]:
        """The endpoint's metric families by name (a counter's name without ``_total``, as the parser gives it)."""
        resp = httpx.get(self.url, timeout=5, trust_env=False)
        resp.raise_for_status()
        assert resp.headers["content-type"].startswith("text/plain"), resp.headers
        return {f.name: f for f in text_string_to_metric_families(resp.text)}

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        stop_process(self.proc)
        self._reader.join(5)


def wait_for_json(path: Path, run: MetricsRun, timeout: float) -> dict[str, Any]:
    """The summary, once it is written whole (while the run that writes it is still up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, f"the run ended before its summary was read:\n{run.output[-3000:]}"
        try:
            document: dict[str, Any] = orjson.loads(path.read_bytes())
            return document
        except (FileNotFoundError, orjson.JSONDecodeError):
            time.sleep(0.05)
    raise AssertionError(f"no {path} within {timeout}s:\n{run.output[-3000:]}")


def samples(families: dict[str, Any], sample_name: str) -> list[Sample]:
    """Every sample of that name, whichever family holds it."""
    family = families.get(re.sub(r"_(total|bucket|count|sum)$", "", sample_name))
    return [s for s in family.samples if s.name == sample_name] if family is not None else []


def by_label(families: dict[str, Any], sample_name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[k] for k in labels): s.value for s in samples(families, sample_name)}


def served_names(families: dict[str, Any]) -> dict[str, str]:
    """Each name a PromQL expression may use for these families, with its type."""
    names = {}
    for f in families.values():
        names[f.name + "_total" if f.type == "counter" else f.name] = f.type
        if f.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[f.name + suffix] = f.type
    return names

