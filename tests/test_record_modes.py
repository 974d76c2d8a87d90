"""Proxy modes through the real recorder: HTTPS (HTTP/1.1 and HTTP/2) via mitmproxy's CA,
upstream mode, and WebSocket / raw TCP flows that are skipped and counted, never a crash."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import orjson
import pytest

from recorder.redaction import PLACEHOLDER
from traffic_replay.format import load_recordings

from processes import interrupt, start_process, start_recorder, stop_process, target_log
from servers import (
    ACCESS_TOKEN,
    SESSION_COOKIE,
    self_signed_certificate,
    tcp_echo,
    tcp_roundtrip_via_proxy,
    tls_api,
    websocket_echo,
    websocket_roundtrip_via_proxy,
)

pytestmark = pytest.mark.timeout(90)



@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_https_through_mitmproxys_ca(tmp_path: Path, http2: bool) -> None:
    out, ca_dir = tmp_path / "rec", tmp_path / "ca"
    cert, key = self_signed_certificate(tmp_path)
    # The target's certificate is self-signed, so mitmproxy is told not to verify it (--ssl-insecure);
    # the client verifies mitmproxy's, with the CA that mitmproxy generated in --ca-dir.
    proc, port = start_recorder(out, "--ca-dir", str(ca_dir), "--ssl-insecure")
    try:
        ca_cert = ca_dir / "mitmproxy-ca-cert.pem"
        assert ca_cert.is_file()
        with tls_api(cert, key) as (base, seen):
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as untrusting:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    untrusting.get(f"{base}/untrusted")
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=str(ca_cert), http2=http2,
                              trust_env=False, headers={"User-Agent": "tls-test/1.0"}) as client:
                login = client.post(f"{base}/token", json={"user": "ada", "password": "tls-password-4d2c"})
                me = client.get(f"{base}/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
            assert (login.status_code, me.status_code) == (200, 200)
            assert {login.http_version, me.http_version} == {"HTTP/2" if http2 else "HTTP/1.1"}
            assert seen == [("POST", "/token", "HTTP/2" if http2 else "HTTP/1.1"),
                            ("GET", "/me", "HTTP/2" if http2 else "HTTP/1.1")]
        summary = interrupt(proc)
    finally:
        stop_process(proc)
    assert "2 requests recorded in 1 sessions" in summary
    [session] = load_recordings(out)
    token_post, me_get = session.requests
    assert [(r.method, r.scheme, r.host, r.path) for r in session.requests] == [
        ("POST", "https", "127.0.0.1", "/token"), ("GET", "https", "127.0.0.1", "/me")]
    assert {r.http_version for r in session.requests} == {"HTTP/2.0" if http2 else "HTTP/1.1"}
    # The token the server handed out and the one sent back share one placeholder; neither is on disk.
    assert token_post.response is not None and token_post.response.body is not None
    issued = orjson.loads(token_post.response.body.to_bytes())["access_token"]
    assert PLACEHOLDER.fullmatch(issued)
    assert {k.lower(): v for k, v in me_get.headers}["authorization"] == f"Bearer {issued}"
    for path in (p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in (ACCESS_TOKEN, SESSION_COOKIE, "tls-password-4d2c"):
            assert secret.encode() not in data, (secret, path)


def test_upstream_mode_records_through_another_proxy(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    mitmdump = Path(sys.executable).with_name("mitmdump")
    upstream, match = start_process([str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", "0",
                                     "--set", f"confdir={tmp_path / 'upstream-ca'}"],
                                    r"proxy listening at \S*:(\d+)", timeout=30, merge_stderr=True)
    try:
        proc, port = start_recorder(out, "--mode", f"upstream:http://127.0.0.1:{match.group(1)}")
        try:
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
                assert client.get(f"{demo_target}/api/items/3").status_code == 200
                assert client.get(f"{demo_target}/items?page=2").status_code == 200
            interrupt(proc)
        finally:
            stop_process(proc)
        upstream_log = interrupt(upstream)
    finally:
        stop_process(upstream)
    # Both requests went through the upstream proxy (mitmdump logs each flow it passes on).
    assert f"GET {demo_target}/api/items/3" in upstream_log and f"GET {demo_target}/items?page=2" in upstream_log
    assert [(e["method"], e["path"]) for e in target_log(demo_target)] == [("GET", "/api/items/3"),
                                                                          ("GET", "/items?page=2")]
    [session] = load_recordings(out)
    target_port = int(demo_target.rsplit(":", 1)[1])
    assert [(r.host, r.port, r.path, r.response.status if r.response else None) for r in session.requests] == [
        ("127.0.0.1", target_port, "/api/items/3", 200), ("127.0.0.1", target_port, "/items?page=2", 200)]


def test_websocket_and_raw_tcp_are_skipped_and_counted(demo_target: str, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc, port = start_recorder(out)
    try:
        with websocket_echo() as ws_port:
            assert websocket_roundtrip_via_proxy(port, ws_port, "hello") == "echo: hello"
        with tcp_echo() as tcp_port:
            assert tcp_roundtrip_via_proxy(port, tcp_port, b"\x00\x01raw bytes\n") == b"\x00\x01raw bytes\n"
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            assert client.get(f"{demo_target}/api/items/1").status_code == 200
        summary = interrupt(proc)
    finally:
        stop_process(proc)
    assert "1 requests recorded in 1 sessions" in summary
    assert "(2 skipped: " in summary and "1 websocket" in summary and "1 non-http" in summary
    assert "Traceback" not in summary
    assert [r.path for s in load_recordings(out) for r in s.requests] == ["/api/items/1"]
