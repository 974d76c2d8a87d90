"""Re-record the bundled ``recordings/`` through the real recorder against the demo target.

    python scripts/record_demo.py [OUTPUT_DIR]

Starts the demo target and ``replay record`` on free loopback ports, drives a few
user journeys through the proxy with httpx (one User-Agent per journey, so each
becomes its own session), stops the recorder with SIGINT, then names and weighs the
sessions it wrote. Nothing here writes a session by hand.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from traffic_replay.demo.target import DEMO_PASSWORD
from traffic_replay.format import load_recordings, replace, write_session
from traffic_replay.redacted import DEMO_SECRETS, placeholder, secret_env_name

ROOT = Path(__file__).resolve().parents[1]

Journey = Callable[[httpx.Client], None]


def browse(c: httpx.Client) -> None:
    for path in ("/", "/items", "/items?page=2", "/items/17", "/api/items/17", "/items/23"):
        c.get(path).raise_for_status()
        time.sleep(0.3)


def shop_via_api(c: httpx.Client) -> None:
    c.get("/api/items?page=1").raise_for_status()
    time.sleep(0.2)
    c.get("/api/items/5").raise_for_status()
    time.sleep(0.2)
    assert c.post("/login", data={"username": "ada", "password": "demo"}).status_code == 302
    time.sleep(0.2)
    c.get("/account").raise_for_status()
    time.sleep(0.4)
    assert c.post("/api/cart", json={"item_id": 5, "qty": 2}).status_code == 201
    time.sleep(0.2)
    c.get("/api/cart").raise_for_status()
    time.sleep(0.2)
    assert c.post("/logout").status_code == 302


def search_and_log_in(c: httpx.Client) -> None:
    c.get("/login").raise_for_status()
    time.sleep(0.5)
    assert c.post("/login", data={"username": "grace", "password": "demo"}).status_code == 302
    time.sleep(0.2)
    c.get("/account").raise_for_status()
    time.sleep(0.3)
    c.get("/items?q=Item+1").raise_for_status()
    time.sleep(0.3)
    c.get("/items/12").raise_for_status()
    time.sleep(0.2)
    assert c.get("/items/999").status_code == 404
    time.sleep(0.2)
    assert c.post("/logout").status_code == 302


def sell_an_item(c: httpx.Client) -> None:
    # Every value carried over here is handed out by the server and differs per user:
    # the replay only passes when each virtual user extracts and sends its own.
    form = c.get("/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    time.sleep(0.4)
    signin = c.post("/signin", data={"username": "lin", "password": "demo", "csrf_token": csrf.group(1)})
    assert signin.status_code == 302
    time.sleep(0.2)
    page = c.get("/sell").text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert token is not None
    time.sleep(0.5)
    created = c.post("/api/listings", json={"name": "Desk lamp", "price": 12.5},
                     headers={"X-CSRF-Token": token.group(1)})
    assert created.status_code == 201
    listing = created.json()["listing"]["id"]
    time.sleep(0.2)
    c.get(f"/api/listings/{listing}").raise_for_status()
    time.sleep(0.2)
    c.get(f"/listings/{listing}").raise_for_status()
    time.sleep(0.2)
    bearer = c.post("/api/token").json()["auth"]["access_token"]
    time.sleep(0.2)
    c.get("/api/me", headers={"Authorization": f"Bearer {bearer}"}).raise_for_status()
    time.sleep(0.2)
    assert c.post("/logout").status_code == 302


# (name, weight, journey): the weights make browsing the most common thing users do.
JOURNEYS: list[tuple[str, float, Journey]] = [
    ("browse catalogue", 5, browse),
    ("shop via the API", 3, shop_via_api),
    ("search and log in", 2, search_and_log_in),
    ("sell an item", 2, sell_an_item),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_line(proc: subprocess.Popen[str], needle: str, stream: str) -> str:
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    for line in pipe:
        if needle in line:
            return line
    raise SystemExit(f"process exited before printing {needle!r} (exit code {proc.wait()})")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "recordings"
    scratch = Path(tempfile.mkdtemp(prefix="record-demo-"))
    # A key of its own, beside the scratch recordings and deleted with them: nothing left in ~/.config.
    work, key = scratch / "rec", scratch / "demo.key"
    target = subprocess.Popen([sys.executable, "-m", "traffic_replay.demo", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    recorder = None
    try:
        base = _wait_for_line(target, "listening on", "stdout").split()[-1]
        port = _free_port()
        recorder = subprocess.Popen([sys.executable, "-m", "traffic_replay.cli", "record", str(work),
                                     "--listen-port", str(port), "--idle-gap", "60", "--redaction-key-file", str(key)],
                                    stderr=subprocess.PIPE, text=True)
        _wait_for_line(recorder, "recording sessions into", "stderr")
        for name, _weight, journey in JOURNEYS:
            with httpx.Client(base_url=base, proxy=f"http://127.0.0.1:{port}", trust_env=False,
                              headers={"User-Agent": f"demo-user/1.0 ({name})"}) as client:
                journey(client)
        recorder.send_signal(signal.SIGINT)
        if recorder.wait(30) != 0:
            raise SystemExit(f"recorder exited with {recorder.returncode}")
    finally:
        for proc in (recorder, target):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    by_agent = {f"demo-user/1.0 ({name})": (name, weight) for name, weight, _ in JOURNEYS}
    sessions = load_recordings(work)
    if len(sessions) != len(JOURNEYS):
        raise SystemExit(f"expected {len(JOURNEYS)} sessions, the recorder wrote {len(sessions)}")
    if out.exists():
        for old in [*out.glob("*.json"), out / DEMO_SECRETS]:
            old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    # The recorder redacted the demo password; `replay demo` supplies it the way a user
    # supplies any secret: as REPLAY_SECRET_* (never keep real secrets beside recordings).
    redacted = placeholder(bytes.fromhex(key.read_text().strip()), DEMO_PASSWORD)
    (out / DEMO_SECRETS).write_text(f"# The demo target's password, for `replay demo` only.\n"
                                    f"{secret_env_name(redacted)}={DEMO_PASSWORD}\n")
    for session in sessions:
        name, weight = by_agent[session.client.user_agent or ""]
        write_session(replace(session, name=name, weight=weight), out)
        print(f"{name}: {len(session.requests)} requests, weight {weight:g}")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
