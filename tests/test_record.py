"""Record through the real recorder (``replay record`` → mitmproxy) with a real HTTP client."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest

from recorder.redaction import Redactor, load_key
from traffic_replay.format import load_recordings, session_schema

from processes import free_port, start_process, stop_process

pytestmark = pytest.mark.timeout(60)

RECORDING = r"recording sessions into"

# (method, path, body, content type, pause after): what the client sends, in order.
TRAFFIC: list[tuple[str, str, bytes | None, str | None, float]] = [
    ("GET", "/items?page=2", None, None, 0.2),
    ("POST", "/login", b"username=ada&password=demo", "application/x-www-form-urlencoded", 0.3),
    ("GET", "/account", None, None, 0.1),
    ("POST", "/api/cart", b'{"item_id": 7, "qty": 3}', "application/json", 0.0),
]


def _record(out: Path, *mode: str) -> tuple[object, int]:
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "traffic_replay.cli", "record", str(out), "--listen-port",
                             str(port), *mode], RECORDING, timeout=30, merge_stderr=True)
    return proc, port


def _drive(client: httpx.Client) -> list[int]:
    statuses = []
    for method, path, body, ctype, pause in TRAFFIC:
        headers = {"Content-Type": ctype} if ctype else {}
        statuses.append(client.request(method, path, content=body, headers=headers).status_code)
        time.sleep(pause)
    return statuses


def _assert_recorded_exactly(out: Path, host: str, port: int, statuses: list[int]) -> None:
    sessions = load_recordings(out)
    assert len(sessions) == 1
    requests = sessions[0].requests
    assert [(r.method, r.path) for r in requests] == [(m, p) for m, p, *_ in TRAFFIC]
    # Redaction is on by default: the password became the directory's stable placeholder.
    redacted = Redactor(load_key(out)).form("username=ada&password=demo").encode()
    expected = [redacted if b and b"password" in b else b for _, _, b, _, _ in TRAFFIC]
    assert [r.body.to_bytes() if r.body else None for r in requests] == expected
    assert b"password=demo" not in b"".join(p.read_bytes() for p in out.glob("*.json"))
    assert [r.response.status if r.response else None for r in requests] == statuses
    assert {(r.host, r.port) for r in requests} == {(host, port)}
    assert dict(requests[1].headers)["Content-Type"] == "application/x-www-form-urlencoded"
    # Timing: offsets grow by at least the client's pauses, durations are real.
    offsets = [r.offset_ms for r in requests]
    assert offsets[0] == 0 and all(r.duration_ms > 0 for r in requests)
    for (_, _, _, _, pause), before, after in zip(TRAFFIC, offsets, offsets[1:], strict=False):
        assert after - before >= pause * 1000
    assert offsets[-1] < 5000
    # The file on disk is valid against the published JSON Schema.
    for path in out.glob("*.json"):
        jsonschema.validate(orjson.loads(path.read_bytes()), session_schema())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_explicit_proxy_records_what_the_client_sent(demo_target: str, tmp_path: Path, stop: signal.Signals) -> None:
    out = tmp_path / "rec"
    proc, port = _record(out)
    try:
        with httpx.Client(base_url=demo_target, proxy=f"http://127.0.0.1:{port}", trust_env=False,
                          headers={"User-Agent": "record-test/1.0"}) as client:
            statuses = _drive(client)
        assert statuses == [200, 302, 200, 201]
        proc.send_signal(stop)  # type: ignore[attr-defined]
        assert proc.wait(30) == 0  # type: ignore[attr-defined]
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    target_port = int(demo_target.rsplit(":", 1)[1])
    _assert_recorded_exactly(out, "127.0.0.1", target_port, statuses)


def test_reverse_proxy_records_what_the_client_sent(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc, port = _record(out, "--mode", f"reverse:{demo_target}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          headers={"User-Agent": "record-test/1.0"}) as client:
            statuses = _drive(client)
        assert statuses == [200, 302, 200, 201]
        proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
        assert proc.wait(30) == 0  # type: ignore[attr-defined]
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    _assert_recorded_exactly(out, "127.0.0.1", int(demo_target.rsplit(":", 1)[1]), statuses)


def test_the_addon_runs_under_plain_mitmdump(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    port = free_port()
    addon = Path(__file__).resolve().parents[1] / "recorder" / "addon.py"
    mitmdump = Path(sys.executable).with_name("mitmdump")
    proc, _ = start_process([str(mitmdump), "-s", str(addon), "--listen-host", "127.0.0.1", "--listen-port",
                             str(port), "--set", f"replay_dir={out}", "--set", "replay_idle_gap=0.5"],
                            # mitmdump may run a script's start hook late: the listening proxy is the sign.
                            r"proxy listening at|recording sessions into", timeout=30, merge_stderr=True)
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            assert client.get(f"{demo_target}/api/items/3").status_code == 200
        # The idle gap closes and writes the session while mitmdump keeps running.
        deadline = time.monotonic() + 10
        while not list(out.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [r.path for s in load_recordings(out) for r in s.requests] == ["/api/items/3"]
    finally:
        stop_process(proc)


def test_bytes_that_are_not_utf8_in_a_path_or_header_are_recorded_not_lost(demo_target: str, tmp_path: Path) -> None:
    # A client may send raw bytes that are not UTF-8; before, the one such request made the
    # journal fail and lost its whole session, the good requests with it, at Ctrl-C.
    import socket

    out = tmp_path / "rec"
    proc, port = _record(out, "--mode", f"reverse:{demo_target}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /items?q=caf\xe9 HTTP/1.1\r\nHost: x\r\nUser-Agent: raw/1\r\nX-Name: caf\xe9\r\n"
                        b"Connection: close\r\n\r\n")
            status = int(raw.recv(64).split(b" ")[1])  # the demo's own answer to it (a 500 today)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          headers={"User-Agent": "raw/1"}) as client:
            assert client.get("/items").status_code == 200
        proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
        assert proc.wait(30) == 0  # type: ignore[attr-defined]
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    requests = [r for s in load_recordings(out) for r in s.requests]
    assert [r.path for r in requests] == ["/items?q=caf%E9", "/items"]
    assert dict(requests[0].headers)["X-Name"] == "caf\ufffd"
    assert [r.response.status for r in requests if r.response] == [status, 200]
