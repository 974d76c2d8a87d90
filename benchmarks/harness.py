"""What the benchmarks share: ports, child processes, a local nginx, CPU and memory from /proc.

benchmarks/replay_throughput.py and benchmarks/recorder_throughput.py both put their load
in front of the same kind of nginx (1 worker, access log off, everything under a temporary
directory); each passes the `server { ... }` body it needs to `start_nginx`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    """A progress line, on stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; RuntimeError if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f}s")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a child we started, by PID: ``sig``, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a run we started in a session of its own: the process group whose id is its PID.

    SIGTERM (Locust shuts down cleanly on it; SIGINT may be ignored when we were started
    in the background), then SIGKILL for whatever is still there after 10 s.
    """
    def signal_group(sig: int) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader; the group lives on while any member does
        if not signal_group(0):
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    proc.wait()


def apt_install(package: str) -> None:
    """`apt-get update` then `apt-get install` the Debian ``package``, non-interactively."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)


# --- nginx -----------------------------------------------------------------------------

def ensure_nginx() -> str:
    """The nginx binary; installed with apt-get when missing."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    log("nginx is not on PATH: installing it with apt-get (Debian package 'nginx')")
    apt_install("nginx")
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise RuntimeError("apt-get installed nginx but no nginx binary was found")
    return found


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
{http_directives}    server {{
        listen 127.0.0.1:{port};
{locations}    }}
{extra_servers}}}
"""

# The simplest upstream: every request answered `200 ok`.
OK_LOCATION = """\
        location / {
            default_type text/plain;
            return 200 "ok\\n";
        }
"""


def nginx_conf(tmp: Path, port: int, locations: str, extra_servers: str = "", http_directives: str = "") -> str:
    """The configuration: ``locations`` go in the server on ``port``; ``extra_servers`` and
    ``http_directives`` (whole lines, indented, newline-terminated) in the http block."""
    return NGINX_CONF.format(tmp=tmp, port=port, locations=locations, extra_servers=extra_servers,
                             http_directives=http_directives)


def start_nginx(binary: str, tmp: Path, locations: str, extra_servers: str = "",
                http_directives: str = "") -> tuple[subprocess.Popen[bytes], int]:
    """nginx on a free port, files under ``tmp`` (see `nginx_conf`): (process, port).

    It runs in a session of its own; stop it with ``stop(proc, signal.SIGQUIT)``.
    """
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, port, locations, extra_servers, http_directives))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, proc, "nginx")
    except BaseException:
        stop(proc, signal.SIGTERM)
        raise
    return proc, port


def stub_status_server(status_port: int) -> str:
    """An extra server block (for `start_nginx`) answering nginx's stub_status on ``status_port``."""
    return f"""\
    # Requests handled so far, read mid-run: a request count neither side has to report.
    server {{
        listen 127.0.0.1:{status_port};
        location / {{
            stub_status;
        }}
    }}
"""


def nginx_requests(status_port: int) -> int:
    """Requests nginx has handled since it started (its stub_status counter; the reads count too)."""
    with socket.create_connection(("127.0.0.1", status_port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: status\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    # "... server accepts handled requests\n 12 12 345 \n..."
    lines = answer.decode("ascii", "replace").splitlines()
    at = next(i for i, line in enumerate(lines) if "accepts handled requests" in line)
    return int(lines[at + 1].split()[2])


# --- /proc ------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime+stime of one live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a live process and all its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total / tick


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (VmRSS), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
