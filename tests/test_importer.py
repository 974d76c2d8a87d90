"""``replay import`` end to end: a HAR made by Playwright driving Debian's chromium, a flow file made
by ``mitmdump -w``, both from real traffic to the demo target; and bad input.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import sync_playwright

from traffic_replay.format import Session, load_recordings

from processes import REPO_ROOT, free_port, start_process, stop_process

pytestmark = pytest.mark.timeout(120)

REPLAY = [sys.executable, "-m", "traffic_replay.cli"]
CHROMIUM = "/usr/bin/chromium"


def replay_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REPLAY, "import", *args], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def accounted(stderr: str) -> tuple[int, int, dict[str, int]]:
    """(imported, items read, skipped count by reason) from the import's summary lines."""
    head = re.search(r"imported (\d+) of (\d+) requests", stderr)
    assert head is not None, stderr
    skipped = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+(.+?)\s+\(e\.g\. ", stderr, re.M)}
    return int(head.group(1)), int(head.group(2)), skipped


def browse(base: str, har: Path) -> None:
    """Two tabs of one browser context through the demo shop; Playwright writes the HAR on close."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(record_har_path=str(har))
            page = context.new_page()
            page.route("**/blocked.png", lambda route: route.abort())  # a request with no response
            page.goto(f"{base}/")
            page.goto(f"{base}/items?page=2")
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", "demo")
            page.click("button")
            page.wait_for_url("**/account")
            page.evaluate("""async () => {
                await fetch('/api/cart', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify({item_id: 3, qty: 2})});
                await fetch('/api/items/3');
                const img = new Image(); img.src = '/blocked.png'; document.body.appendChild(img);
                await new Promise(r => setTimeout(r, 300));
            }""")
            other = context.new_page()
            other.goto(f"{base}/items/7")
            context.close()
        finally:
            browser.close()


def test_a_playwright_har_imports_with_every_entry_accounted_for(demo_target: str, tmp_path: Path) -> None:
    har = tmp_path / "shop.har"
    browse(demo_target, har)
    entries = orjson.loads(har.read_bytes())["log"]["entries"]
    out = tmp_path / "rec"

    done = replay_import(str(har), "-o", str(out))
    assert done.returncode == 0, done.stderr
    imported, items, skipped = accounted(done.stderr)
    assert items == len(entries) and imported + sum(skipped.values()) == len(entries)
    assert skipped == {"no response (status 0: blocked, cancelled or failed)": 1}
    (session,) = load_recordings(out)  # one session per file by default: one user's journey
    answered = [e for e in entries if e["response"]["status"] > 0]
    assert sorted((r.method, r.path, r.response.status if r.response else 0) for r in session.requests) == sorted(
        (e["request"]["method"], e["request"]["url"].removeprefix(demo_target), e["response"]["status"])
        for e in answered)
    login = next(r for r in session.requests if r.method == "POST" and r.path == "/login")
    assert login.body is not None and "username=ada" in login.body.data
    # Redacted as the recorder redacts: neither the password nor the session cookie is on disk.
    sid = next(v for r in session.requests if r.response for k, v in r.response.headers if k.lower() == "set-cookie")
    assert "«redacted:" in sid
    on_disk = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"password=demo" not in on_disk
    cart = next(r for r in session.requests if r.path == "/api/cart")
    assert cart.body is not None and orjson.loads(cart.body.data) == {"item_id": 3, "qty": 2}
    offsets = [r.offset_ms for r in session.requests]
    assert offsets == sorted(offsets) and offsets[-1] > 0

    # Per page: Playwright makes one HAR page per tab.
    per_page = replay_import(str(har), "-o", str(tmp_path / "pages"), "--per", "page")
    assert per_page.returncode == 0, per_page.stderr
    assert sorted(len(s.requests) for s in load_recordings(tmp_path / "pages")) == [1, len(answered) - 1]


def _session_view(sessions: list[Session]) -> list[tuple[object, ...]]:
    """What must match between two recordings of the same flows (not the random session ids)."""
    return sorted(
        (s.name, s.client, s.started_at,
         tuple((r.offset_ms, r.duration_ms, r.method, r.host, r.port, r.path, tuple(r.headers), r.body,
                r.response) for r in s.requests))
        for s in sessions)


def test_a_mitmdump_flow_file_imports_as_the_live_recorder_records(demo_target: str, tmp_path: Path) -> None:
    flows, live, imported = tmp_path / "flows.mitm", tmp_path / "live", tmp_path / "imported"
    port = free_port()
    mitmdump = Path(sys.executable).with_name("mitmdump")
    addon = REPO_ROOT / "recorder" / "addon.py"
    # The same flows, recorded live by our addon and saved by mitmproxy's own writer, side by side.
    proc, _ = start_process([str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", str(port), "-w", str(flows),
                             "-s", str(addon), "--set", f"replay_dir={live}", "--set", "replay_idle_gap=1"],
                            # Not the addon's own start line: under load mitmproxy may skip a script's
                            # running hook (the script is loaded before the proxy listens either way).
                            r"proxy listening at", timeout=30, merge_stderr=True)
    try:
        for agent in ("alice/1.0", "bob/2.0"):
            with httpx.Client(base_url=demo_target, proxy=f"http://127.0.0.1:{port}", trust_env=False,
                              headers={"User-Agent": agent}) as client:
                client.get("/items?page=2")
                client.post("/login", data={"username": agent, "password": "demo"})
                client.post("/api/cart", json={"item_id": 4, "qty": 1})
                time.sleep(1.3)  # longer than the idle gap: a second session for this client
                client.get("/api/items/4")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)

    done = replay_import(str(flows), "-o", str(imported), "--idle-gap", "1")
    assert done.returncode == 0, done.stderr
    assert accounted(done.stderr) == (8, 8, {})
    # The live recorder's redaction key is the directory's: import into a copy of it (its id, which names the
    # key in this machine's config directory) to compare byte for byte.
    assert len(load_recordings(imported)) == 4
    again = tmp_path / "again"
    again.mkdir()
    (again / ".recording-id").write_bytes((live / ".recording-id").read_bytes())
    assert replay_import(str(flows), "-o", str(again), "--idle-gap", "1").returncode == 0
    assert _session_view(load_recordings(again)) == _session_view(load_recordings(live))


def test_a_truncated_flow_file_imports_what_it_can_and_says_so(demo_target: str, tmp_path: Path) -> None:
    flows = tmp_path / "flows.mitm"
    port = free_port()
    mitmdump = Path(sys.executable).with_name("mitmdump")
    proc, _ = start_process([str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", str(port), "-w",
                             str(flows)], r"listening at", timeout=30, merge_stderr=True)
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for n in range(1, 5):
                client.get(f"{demo_target}/api/items/{n}")
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        stop_process(proc)
    data = flows.read_bytes()
    flows.write_bytes(data[: len(data) - 200])

    done = replay_import(str(flows), "-o", str(tmp_path / "rec"))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(flows) in errors[0] and "truncated or damaged after flow 3" in errors[0]
    assert "Traceback" not in done.stderr
    assert [r.path for s in load_recordings(tmp_path / "rec") for r in s.requests] == [f"/api/items/{n}"
                                                                                        for n in (1, 2, 3)]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.har", None, "no such file"),
    ("notes.txt", b"just some text\n", "not a mitmproxy flow file"),
    ("x.har", b'{"hello": "world"}', "not a HAR file: no log.entries list"),
    ("x.har", b'{"log": {"entries": [', "not a HAR file: not valid JSON"),
    ("empty.mitm", b"", "not a mitmproxy flow file"),
])
def test_bad_input_is_one_error_line_with_the_path(tmp_path: Path, name: str, content: bytes | None,
                                                   message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    done = replay_import(str(path), "-o", str(tmp_path / "rec"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message in lines[0], lines


def test_entries_a_session_file_could_not_hold_are_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    # Browsers and hand-edited HARs hold what no session file may: a method with a space, a port past
    # 65535. Each is skipped with its reason; what is written loads (a bad line refused at load would
    # take its whole session with it).
    def entry(method: str, url: str) -> dict[str, object]:
        return {"startedDateTime": "2026-01-02T10:00:00.000Z", "time": 5,
                "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": []},
                "response": {"status": 200, "statusText": "OK", "headers": [],
                             "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}}}
    har = tmp_path / "odd.har"
    har.write_bytes(orjson.dumps({"log": {"entries": [
        entry("get", "http://127.0.0.1:8000/a"), entry("G ET", "http://127.0.0.1:8000/b"),
        entry("GET", "http://127.0.0.1:99999/c"), entry("PROPFIND", "http://127.0.0.1:8000/d")]}}))
    done = replay_import(str(har), "-o", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    imported, items, skipped = accounted(done.stderr)
    assert (imported, items) == (2, 4) and skipped == {"not an HTTP method": 1, "not a valid HAR entry": 1}
    (session,) = load_recordings(tmp_path / "rec")
    assert [(r.method, r.path) for r in session.requests] == [("GET", "/a"), ("PROPFIND", "/d")]
