"""The ``replay`` command line: builds the settings, calls the core, runs the two runtimes.

Recording runs mitmproxy (asyncio) and replaying runs Locust (gevent), each in a
process of its own started from here; this module imports neither.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer
from rich.console import Console

from traffic_replay.checks import check_target
from traffic_replay.errors import ConfigError, RecordingError, ReplayError, TargetError
from traffic_replay.format import load_recordings, session_schema
from traffic_replay.inspection import inspect_sessions, render_inspection
from traffic_replay.settings import Settings

app = typer.Typer(help="Record real user traffic with mitmproxy; replay it as a Locust load test.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# Piped output gets a wide page rather than rich's 80 columns, so that tables stay readable in logs.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False) -> None:
    if debug:
        os.environ["REPLAY_DEBUG"] = "true"


def _module_file(name: str) -> str:
    spec = find_spec(name)
    if spec is None or spec.origin is None:
        raise ConfigError(f"cannot find module {name}: is traffic-replay installed?")
    return spec.origin


@app.command()
def record(
    directory: Annotated[Path, typer.Argument(help="Where session files are written.")] = Path("recordings"),
    mode: Annotated[str | None, typer.Option(help="'regular' (explicit proxy) or 'reverse:URL'.")] = None,
    listen_host: Annotated[str | None, typer.Option(help="Proxy address.")] = None,
    listen_port: Annotated[int | None, typer.Option(help="Proxy port.")] = None,
    idle_gap: Annotated[float | None, typer.Option(help="Seconds of silence that end a session.")] = None,
    body_cap: Annotated[int | None, typer.Option(help="Bytes of each response body kept.")] = None,
) -> NoReturn:
    """Record traffic through a mitmproxy proxy into session files (Ctrl-C writes and stops)."""
    settings = Settings.build(mode=mode, listen_host=listen_host, listen_port=listen_port, idle_gap=idle_gap,
                              body_cap=body_cap)
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"{directory}: exists and is not a directory")
    args = [sys.executable, "-m", "recorder", "--mode", settings.mode,
            "--listen-host", settings.listen_host, "--listen-port", str(settings.listen_port),
            "--set", f"replay_dir={directory}", "--set", f"replay_idle_gap={settings.idle_gap}",
            "--set", f"replay_body_cap={settings.body_cap}", "--set", "flow_detail=0",
            "--set", f"termlog_verbosity={'debug' if settings.debug else 'warn'}"]
    sys.stdout.flush()
    # exec, so that Ctrl-C and SIGTERM reach mitmproxy itself, which writes every open session.
    os.execv(sys.executable, args)


@app.command()
def inspect(
    directory: Annotated[Path, typer.Argument(help="Recordings directory.")] = Path("recordings"),
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the sessions and endpoints of a recordings directory."""
    report = inspect_sessions(load_recordings(directory))
    if json:
        sys.stdout.write(orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render_inspection(report, out)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a session file."""
    sys.stdout.write(orjson.dumps(session_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def check(
    host: Annotated[str | None, typer.Option(help="Target base URL (or REPLAY_HOST / BASE_URL).")] = None,
    directory: Annotated[Path | None, typer.Argument(help="Probe the first recorded GET of each session.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for each probe.")] = None,
) -> None:
    """Preflight health check: the target is reachable, its TLS is valid, and it answers."""
    settings = Settings.build(host=host, check_timeout=timeout)
    sessions = load_recordings(directory) if directory is not None else None
    for probe in check_target(_require_host(settings), sessions, settings.check_timeout):
        out.print(f"ok  {probe.method} {probe.url}  {probe.status}  {probe.latency_ms:.1f} ms", highlight=False)


def _require_host(settings: Settings) -> str:
    if settings.host is None:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    return settings.host


def _run_locust(settings: Settings) -> int:
    """Run Locust on our locustfile with ``settings``; return its exit code."""
    host = _require_host(settings)
    sessions = load_recordings(settings.recordings)
    if settings.check:
        probe = check_target(host, sessions, settings.check_timeout)[0]
        err.print(f"target ok: {probe.method} {probe.url} answered {probe.status} in {probe.latency_ms:.0f} ms",
                  highlight=False)
    args = [sys.executable, "-m", "locust", "-f", _module_file("replayer.locustfile"), "--host", host,
            "--users", str(settings.users), "--spawn-rate", str(settings.spawn_rate),
            "--loglevel", "DEBUG" if settings.debug else "INFO"]
    if settings.headless:
        args.append("--headless")
    else:
        args += ["--web-host", settings.web_host, "--web-port", str(settings.web_port)]
    if settings.run_time:
        args += ["--run-time", settings.run_time]
    if settings.csv:
        args += ["--csv", settings.csv]
    if settings.html:
        args += ["--html", str(settings.html)]
    child = subprocess.Popen(args, env={**os.environ, **settings.to_env()})
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to Locust too; let it stop and print its summary.
        return child.wait()


@app.command()
def run(
    directory: Annotated[Path | None, typer.Argument(help="Recordings directory.")] = None,
    host: Annotated[str | None, typer.Option(help="Target base URL (or REPLAY_HOST / BASE_URL).")] = None,
    users: Annotated[int | None, typer.Option("-u", "--users", help="Peak concurrent users.")] = None,
    spawn_rate: Annotated[float | None, typer.Option("-r", "--spawn-rate", help="Users started per second.")] = None,
    run_time: Annotated[str | None, typer.Option("-t", "--run-time", help="Stop after e.g. 30s, 5m.")] = None,
    speed: Annotated[float | None, typer.Option(help="Divide think time by this; 0 = no waiting.")] = None,
    headless: Annotated[bool | None, typer.Option("--headless", help="No web UI.")] = None,
    web_host: Annotated[str | None, typer.Option(help="Web UI address.")] = None,
    web_port: Annotated[int | None, typer.Option(help="Web UI port.")] = None,
    csv: Annotated[str | None, typer.Option(help="Prefix of Locust's CSV files.")] = None,
    html: Annotated[Path | None, typer.Option(help="Locust's HTML report file.")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Write the summary as JSON here.")] = None,
    check: Annotated[bool | None, typer.Option("--check/--no-check", help="Preflight check of the target.")] = None,
) -> None:
    """Replay recorded sessions against a target with Locust."""
    settings = Settings.build(recordings=directory, host=host, users=users, spawn_rate=spawn_rate,
                              run_time=run_time, speed=speed, headless=headless, web_host=web_host,
                              web_port=web_port, csv=csv, html=html, summary_json=summary_json, check=check)
    raise typer.Exit(_run_locust(settings))


def bundled_recordings() -> Path:
    """The sample sessions: inside the package when installed from a wheel, else the checkout's."""
    package = Path(__file__).parent
    installed = package / "bundled_recordings"
    return installed if installed.is_dir() else package.parent / "recordings"


@app.command()
def demo(
    users: Annotated[int, typer.Option("-u", "--users", help="Concurrent users.")] = 10,
    run_time: Annotated[str, typer.Option("-t", "--run-time", help="How long to replay.")] = "10s",
    speed: Annotated[float, typer.Option(help="Divide think time by this; 0 = no waiting.")] = 1.0,
    summary_json: Annotated[Path | None, typer.Option(help="Write the summary as JSON here.")] = None,
) -> None:
    """Start the bundled demo target and replay the bundled recordings against it, headless."""
    target = subprocess.Popen([sys.executable, "-m", "traffic_replay.demo_target", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = target.stdout.readline() if target.stdout else ""
        if "listening on " not in line:
            raise TargetError(f"the demo target did not start (exit code {target.poll()})")
        url = line.rsplit(" ", 1)[-1].strip()
        err.print(f"demo target listening on {url}", highlight=False)
        settings = Settings.build(recordings=bundled_recordings(), host=url, users=users, spawn_rate=users,
                                  run_time=run_time, speed=speed, headless=True, summary_json=summary_json)
        code = _run_locust(settings)
    finally:
        target.terminate()
        try:
            target.wait(5)
        except subprocess.TimeoutExpired:
            target.kill()
    raise typer.Exit(code)


def main() -> None:
    """Entry point: every ``ReplayError`` becomes ``error: ...`` lines and a non-zero exit."""
    debug = "--debug" in sys.argv or os.environ.get("REPLAY_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        app()
    except ReplayError as e:
        if debug:
            raise
        for line in str(e).splitlines():
            err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        err.print(f"error: internal error: {e!r} (run with --debug for the traceback)", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
