"""``replay run``, ``replay demo`` and ``replay check``: Locust in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from traffic_replay.cli.app import app, err, module_file, out
from traffic_replay.errors import ConfigError, TargetError
from traffic_replay.format import load_recordings
from traffic_replay.listening import check_free, open_door
from traffic_replay.packing import Recorded
from traffic_replay.payload import PAYLOAD_FD_ENV, Payload, hand_over, read_workload
from traffic_replay.redacted import DEMO_SECRETS, read_env_file
from traffic_replay.settings import Settings, web_password


@app.command()
def check(
    host: Annotated[str | None, typer.Option(help="Target base URL (or REPLAY_HOST / BASE_URL).")] = None,
    directory: Annotated[Path | None, typer.Argument(
        help="Probe recorded GETs that need no session's state (else only connect); without it, GET /.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for each probe.")] = None,
) -> None:
    """Preflight health check: the target is reachable, its TLS is valid, and it answers."""
    from traffic_replay.checks import check_target

    settings = Settings.build(host=host, check_timeout=timeout)
    sessions = load_recordings(directory) if directory is not None else None
    for probe in check_target(_require_host(settings), sessions, settings.check_timeout):
        out.print(f"ok  {probe.describe()}", highlight=False)


def _require_host(settings: Settings) -> str:
    if settings.host is None:
        raise ConfigError("no target: pass --host URL (or set REPLAY_HOST or BASE_URL)")
    return settings.host


def _hand_over_inputs(settings: Settings, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """Read every input of the replay once, check the target, and hand them over: the variables for the child.

    A worker reads nothing: its master sends it all.
    """
    env = {**os.environ, **settings.environ()}
    if settings.worker:
        return env
    host = _require_host(settings)
    # Forked over two processes for a big recording: this process runs no gevent (it becomes Locust by exec).
    workload = read_workload(settings, {**os.environ, **(secrets or {})}, fork=True, check=settings.check)
    if workload.probing is not None:
        from traffic_replay.checks import check_recorded

        # Only the sessions that may hold a probe are decoded again, and only until there are probes enough.
        candidates = Recorded([workload.sessions[i] for i in workload.probing.candidates])
        for probe in check_recorded(host, candidates, workload.primary, workload.probing.any_get,
                                    settings.check_timeout):
            err.print(f"target ok: {probe.describe()}", highlight=False)
    return {**env, **hand_over(Payload.of(workload))}


def _locust_args(settings: Settings) -> list[str]:
    """Locust's command line for these settings: a local run, a master, or a worker."""
    args = [sys.executable, "-m", "locust", "-f", module_file("replayer.locustfile"),
            "--loglevel", "DEBUG" if settings.debug else "INFO"]
    if settings.processes is not None:
        args += ["--processes", str(settings.processes)]
    if settings.worker:
        return args + ["--worker", "--master-host", settings.master_host, "--master-port", str(settings.master_port)]
    args += ["--host", _require_host(settings), "--users", str(settings.users),
             "--spawn-rate", str(settings.spawn_rate)]
    if settings.master or settings.processes is not None:  # --processes makes this process a master too
        args += ["--master-bind-host", settings.master_bind_host, "--master-bind-port", str(settings.master_bind_port)]
    if settings.processes is not None:  # where the forked workers find this master
        bound = settings.master_bind_host
        args += ["--master-host", "127.0.0.1" if bound in ("*", "0.0.0.0", "") else bound,
                 "--master-port", str(settings.master_bind_port)]
    if settings.master:
        args += ["--master", "--expect-workers", str(settings.expect_workers)]
    if settings.headless:
        args.append("--headless")
    else:
        args += ["--web-host", settings.web_host, "--web-port", str(settings.web_port)]
        if settings.web_login:
            args.append("--web-login")  # the page; replayer.weblogin says who gets past it
    if settings.run_time:
        args += ["--run-time", settings.run_time]
    if settings.csv:
        args += ["--csv", settings.csv]
    if settings.locust_html:
        args += ["--html", str(settings.locust_html)]
    if not settings.locust_stats:
        args.append("--only-summary")  # Locust's periodic table: the progress line says it in one line
    return args


def _check_listening(settings: Settings) -> None:
    """Every address this run will listen on is free, and a warning for each one open to every interface."""
    listens = []
    if not settings.headless and not settings.worker:
        listens.append((settings.web_host, settings.web_port, "the Locust web UI", "--web-host", "--web-port"))
        if settings.web_login:
            web_password(os.environ)
    if (settings.master or settings.processes is not None) and not settings.worker:
        listens.append((settings.master_bind_host, settings.master_bind_port, "the master's port for workers",
                        "--master-bind-host", "--master-bind-port"))
    if settings.prometheus_port is not None and not settings.worker:
        listens.append((settings.prometheus_host, settings.prometheus_port, "the Prometheus endpoint",
                        "--prometheus-host", "--prometheus-port"))
    for host, port, what, host_flag, port_flag in listens:
        if warning := open_door(host, what, host_flag):
            if host_flag == "--web-host" and not settings.web_login:
                warning += ", or --web-login puts it behind a login page"
            err.print(warning, highlight=False, markup=False, soft_wrap=True)
        check_free(host, port, port_flag)


def _inherited(env: dict[str, str]) -> tuple[int, ...]:
    return (int(env[PAYLOAD_FD_ENV]),) if PAYLOAD_FD_ENV in env else ()


def _run_locust(settings: Settings, secrets: dict[str, str]) -> int:
    """Run Locust as a child (the caller has more to do after it); return its exit code."""
    env = _hand_over_inputs(settings, secrets)
    child = subprocess.Popen(_locust_args(settings), env=env, pass_fds=_inherited(env))
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to Locust too; let it stop and print its summary.
        return child.wait()
    except SystemExit:  # SIGTERM (see demo): Locust is ours to stop, it prints its summary on the way out
        child.terminate()
        child.wait(30)
        raise


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
    web_login: Annotated[bool | None, typer.Option(
        "--web-login", help="Web UI behind a login page: --web-user, the password in REPLAY_WEB_PASSWORD.")] = None,
    web_user: Annotated[str | None, typer.Option(help="User name of the web UI's login page.")] = None,
    csv: Annotated[str | None, typer.Option(help="Prefix of Locust's CSV files.")] = None,
    html: Annotated[Path | None, typer.Option(help="The run's HTML report: one self-contained file with charts.")
                    ] = None,
    locust_html: Annotated[Path | None, typer.Option(help="Locust's own HTML report file.")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Write the summary as JSON here.")] = None,
    fail_on: Annotated[list[str] | None, typer.Option(
        help="Threshold, e.g. p95<500ms, 'p99\\[/api/orders/{id}]<800ms', errors<1%, sessions_failed==0 "
             "(repeatable); a broken one exits 4.")] = None,
    fail_on_abort: Annotated[bool | None, typer.Option(
        "--fail-on-abort", help="End the run as soon as a threshold can no longer hold.")] = None,
    quiet: Annotated[bool | None, typer.Option("--quiet", "-q", help="No live progress line.")] = None,
    locust_stats: Annotated[bool | None, typer.Option(
        "--locust-stats", help="Also print Locust's own stats table every few seconds.")] = None,
    prometheus_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    prometheus_host: Annotated[str | None, typer.Option(
        help="Address of the Prometheus endpoint (0.0.0.0 for other machines).")] = None,
    prometheus_linger: Annotated[float | None, typer.Option(
        help="Seconds the Prometheus endpoint stays up after the run, for a last scrape.")] = None,
    check: Annotated[bool | None, typer.Option("--check/--no-check", help="Preflight check of the target.")] = None,
    correlate: Annotated[bool | None, typer.Option(
        "--correlate/--no-correlate", help="Carry server-issued values over live (on by default).")] = None,
    rules: Annotated[Path | None, typer.Option(help="TOML file of correlation rules.")] = None,
    cache: Annotated[bool | None, typer.Option(
        "--cache/--no-cache", help="Remember what detection finds, by each file's content (on by default).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where it is remembered (or REPLAY_CACHE_DIR).")] = None,
    map_host: Annotated[list[str] | None, typer.Option(help="ORIGINAL=URL: also send this recorded host's requests.")
                        ] = None,
    data: Annotated[Path | None, typer.Option(help="CSV file: one row per virtual user.")] = None,
    data_map: Annotated[list[str] | None, typer.Option(help="COLUMN=RECORDED: a column replaces a recorded value.")
                        ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds before a request counts as failed.")] = None,
    connect_timeout: Annotated[float | None, typer.Option(
        help="Seconds to connect before a request counts as failed (default: --timeout).")] = None,
    session_rate: Annotated[float | None, typer.Option(help="Open model: sessions started per second.")] = None,
    arrivals: Annotated[str | None, typer.Option(help="Open model: 'constant' or 'poisson'.")] = None,
    timeline: Annotated[bool | None, typer.Option("--timeline", help="Start sessions at their recorded times.")
                        ] = None,
    parallel_overlaps: Annotated[bool | None, typer.Option(
        "--parallel-overlaps", help="Send requests that overlapped in the recording concurrently.")] = None,
    names: Annotated[str | None, typer.Option(help="Stats names: template, path or url.")] = None,
    name_pattern: Annotated[list[str] | None, typer.Option(help="REGEX=NAME: a stats name for matching requests.")
                            ] = None,
    master: Annotated[bool | None, typer.Option("--master", help="Be the master of a distributed run.")] = None,
    worker: Annotated[bool | None, typer.Option(
        "--worker", help="Be a worker: replay what the master sends (no recordings or --host needed).")] = None,
    expect_workers: Annotated[int | None, typer.Option(
        help="Master: start (headless) when this many workers hold the recordings.")] = None,
    master_host: Annotated[str | None, typer.Option(help="Worker: address of the master.")] = None,
    master_port: Annotated[int | None, typer.Option(help="Worker: port of the master.")] = None,
    master_bind_host: Annotated[str | None, typer.Option(
        help="Master: address to accept workers on (0.0.0.0 for other machines).")] = None,
    master_bind_port: Annotated[int | None, typer.Option(help="Master: port to accept workers on.")] = None,
    processes: Annotated[int | None, typer.Option(
        help="Fork this many worker processes on this machine (-1: one per core).")] = None,
    skip_bad: Annotated[bool | None, typer.Option(
        "--skip-bad", help="Replay the good session files of a directory with bad ones; each bad one is named and "
                           "counted (by default one stops the run).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be sent where; send nothing.")] = False,
) -> None:
    """Replay recorded sessions against a target with Locust."""
    settings = Settings.build(recordings=directory, host=host, users=users, spawn_rate=spawn_rate,
                              run_time=run_time, speed=speed, headless=headless, web_host=web_host,
                              web_port=web_port, web_login=web_login, web_user=web_user, csv=csv, html=html,
                              locust_html=locust_html,
                              summary_json=summary_json, fail_on=fail_on or None, fail_on_abort=fail_on_abort,
                              quiet=quiet, locust_stats=locust_stats, prometheus_port=prometheus_port,
                              prometheus_host=prometheus_host, prometheus_linger=prometheus_linger, check=check,
                              correlate=correlate, rules=rules, cache=cache, cache_dir=cache_dir,
                              map_host=map_host or None, data=data, data_map=data_map or None, timeout=timeout,
                              connect_timeout=connect_timeout, session_rate=session_rate, arrivals=arrivals,
                              timeline=timeline, parallel_overlaps=parallel_overlaps, names=names,
                              name_pattern=name_pattern or None, master=master, worker=worker,
                              expect_workers=expect_workers, master_host=master_host, master_port=master_port,
                              master_bind_host=master_bind_host, master_bind_port=master_bind_port,
                              processes=processes, skip_bad=skip_bad)
    if dry_run:
        env = _hand_over_inputs(settings.model_copy(update={"check": False, "worker": False}))
        plan = subprocess.run([sys.executable, "-m", "replayer.plan"], env=env, pass_fds=_inherited(env))
        raise typer.Exit(plan.returncode)
    _check_listening(settings)
    args = _locust_args(settings)
    env = _hand_over_inputs(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: Locust takes this process over, so Ctrl-C reaches it directly and no idle parent stays behind.
    os.execve(sys.executable, args, env)


def bundled_recordings() -> Path:
    """The sample sessions: inside the package when installed from a wheel, else the checkout's."""
    package = Path(__file__).parents[1]  # traffic_replay/
    installed = package / "bundled_recordings"
    return installed if installed.is_dir() else package.parent / "recordings"


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command()
def demo(
    users: Annotated[int, typer.Option("-u", "--users", help="Concurrent users.")] = 10,
    run_time: Annotated[str, typer.Option("-t", "--run-time", help="How long to replay.")] = "10s",
    speed: Annotated[float, typer.Option(help="Divide think time by this; 0 = no waiting.")] = 1.0,
    summary_json: Annotated[Path | None, typer.Option(help="Write the summary as JSON here.")] = None,
    processes: Annotated[int | None, typer.Option(
        help="Fork this many worker processes (-1: one per core).")] = None,
) -> None:
    """Start the bundled demo target and replay the bundled recordings against it, headless."""
    # SIGTERM must not orphan the target and Locust: make it unwind through the `finally`s that stop them.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    target = subprocess.Popen([sys.executable, "-m", "traffic_replay.demo", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = target.stdout.readline() if target.stdout else ""
        if "listening on " not in line:
            raise TargetError(f"the demo target did not start (exit code {target.poll()})")
        url = line.rsplit(" ", 1)[-1].strip()
        err.print(f"demo target listening on {url}", highlight=False)
        settings = Settings.build(recordings=bundled_recordings(), host=url, users=users, spawn_rate=users,
                                  run_time=run_time, speed=speed, headless=True, summary_json=summary_json,
                                  processes=processes)
        secrets = settings.recordings / DEMO_SECRETS
        code = _run_locust(settings, read_env_file(secrets) if secrets.is_file() else {})
    finally:
        target.terminate()
        try:
            target.wait(5)
        except subprocess.TimeoutExpired:
            target.kill()
    raise typer.Exit(code)
