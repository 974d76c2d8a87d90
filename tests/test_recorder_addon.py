"""The addon's hooks called directly, mitmproxy style (taddons + tflow), files read back."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest
from flows import timed_flow
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from recorder.addon import Recorder
from recorder.keys import ID_FILE, LEGACY_KEY_FILE
from recorder.redaction import PLACEHOLDER
from traffic_replay.format import load_recordings

pytestmark = pytest.mark.timeout(30)




def test_flows_become_one_session_per_client(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        recorder.response(timed_flow(b"/a", 100.0, "alice"))
        recorder.response(timed_flow(b"/x", 100.5, "bob", body=b'{"q": 1}'))
        recorder.response(timed_flow(b"/b?page=2", 101.0, "alice"))
        recorder.pipeline.finish()
    sessions = {s.client.user_agent: s for s in load_recordings(tmp_path)}
    assert [r.path for r in sessions["alice"].requests] == ["/a", "/b?page=2"]
    assert [r.offset_ms for r in sessions["alice"].requests] == [0.0, 1000.0]
    assert sessions["bob"].requests[0].body is not None
    assert sessions["bob"].requests[0].body.to_bytes() == b'{"q": 1}'
    assert sessions["alice"].requests[0].response is not None
    assert sessions["alice"].requests[0].response.status == 200


def test_an_idle_gap_splits_a_client_into_two_sessions(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_idle_gap="2")
        recorder.response(timed_flow(b"/1", 100.0, "alice"))
        recorder.response(timed_flow(b"/2", 101.0, "alice"))
        recorder.response(timed_flow(b"/3", 110.0, "alice"))
        recorder.pipeline.finish()
    assert sorted(len(s.requests) for s in load_recordings(tmp_path)) == [1, 2]


def test_response_bodies_are_capped(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_body_cap=4)
        flow = timed_flow(b"/big", 100.0, "alice")
        assert flow.response is not None
        flow.response.content = b"0123456789"
        recorder.response(flow)
        recorder.pipeline.finish()
    body = load_recordings(tmp_path)[0].requests[0].response.body  # type: ignore[union-attr]
    assert body is not None and (body.data, body.size, body.truncated) == ("0123", 10, True)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        # A refused option rolls back to the previous value: make that ours, not ./recordings.
        tctx.configure(recorder, replay_dir=str(tmp_path))
        with pytest.raises(exceptions.OptionsError, match="not a number"):
            tctx.configure(recorder, replay_idle_gap="soon")
        with pytest.raises(exceptions.OptionsError, match="more than 0"):
            tctx.configure(recorder, replay_idle_gap="0")
        (tmp_path / "file").write_text("")
        with pytest.raises(exceptions.OptionsError, match="cannot create directory"):
            tctx.configure(recorder, replay_dir=str(tmp_path / "file" / "sub"))


def test_websocket_and_failed_flows_are_skipped(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        recorder.response(tflow.twebsocketflow())
        recorder.error(tflow.tflow(err=True))
        recorder.pipeline.finish()
    assert recorder.pipeline.skipped == 2 and recorder.pipeline.flows == 0
    assert list(tmp_path.glob("*.json")) == []  # (.journal/ is the crash journal, not a session)


# --- session keys, filters, redaction, non-HTTP flows (issue 5, part A) ---------------------


def _cookie_flow(path: bytes, start: float, sent: str | None = None, sets: str | None = None) -> tflow.HTTPFlow:
    flow = timed_flow(path, start, "same-browser")
    assert flow.response is not None
    if sent:
        flow.request.headers["Cookie"] = f"sid={sent}"
    if sets:
        flow.response.headers["Set-Cookie"] = f"sid={sets}; Path=/"
    return flow


def test_cookie_keyed_sessions_adopt_the_requests_before_login(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_session_key="cookie:sid")
        # Two users behind one address with one User-Agent: only the cookie tells them apart.
        recorder.response(_cookie_flow(b"/login?u=ada", 100.0))
        recorder.response(_cookie_flow(b"/login-post?u=ada", 101.0, sets="A"))
        recorder.response(_cookie_flow(b"/login?u=bob", 102.0))
        recorder.response(_cookie_flow(b"/login-post?u=bob", 103.0, sets="B"))
        for i, user in enumerate(["A", "B", "A", "B"]):
            recorder.response(_cookie_flow(f"/cart/{i}?u={user}".encode(), 104.0 + i, sent=user))
        assert recorder.pipeline.sessionizer.open_count == 2
        recorder.pipeline.finish()
    paths = sorted([r.path for r in s.requests] for s in load_recordings(tmp_path))
    assert paths == [["/login?u=ada", "/login-post?u=ada", "/cart/0?u=A", "/cart/2?u=A"],
                     ["/login?u=bob", "/login-post?u=bob", "/cart/1?u=B", "/cart/3?u=B"]]


def test_header_keyed_sessions_and_max_session(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_session_key="header:X-Device",
                       replay_max_session="10")
        for i, (device, start) in enumerate([("d1", 100.0), ("d2", 101.0), ("d1", 105.0), ("d1", 112.0)]):
            flow = timed_flow(f"/{i}".encode(), start, "app/1")
            flow.request.headers["X-Device"] = device
            recorder.response(flow)
        recorder.pipeline.finish()
    # d1 is split at 10 s: /0 and /2, then /3.
    assert sorted([r.path for r in s.requests] for s in load_recordings(tmp_path)) == [["/0", "/2"], ["/1"], ["/3"]]


def test_filters_skip_and_count_by_reason(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_allow_host=["address", "*.shop.test"],
                       replay_exclude=[r"/health"], replay_static=False)
        flows = {name: timed_flow(path, 100.0 + i, "a") for i, (name, path) in enumerate(
            [("kept", b"/api/items"), ("health", b"/health"), ("css", b"/site.css"), ("img", b"/avatar"),
             ("other", b"/api/items"), ("sub", b"/api/cart")])}
        assert flows["img"].response is not None
        flows["img"].response.headers["Content-Type"] = "image/png"
        flows["other"].request.host = "elsewhere.test"
        flows["sub"].request.host = "eu.shop.test"
        for flow in flows.values():
            recorder.response(flow)
        recorder.pipeline.finish()
    assert sorted(r.path for s in load_recordings(tmp_path) for r in s.requests) == ["/api/cart", "/api/items"]
    assert recorder.pipeline.skips == {"static": 2, "excluded": 1, "host not allowed": 1}
    assert recorder.pipeline.skipped == 4


def test_secrets_are_redacted_in_requests_and_responses(tmp_path: Path) -> None:
    recorder = Recorder()
    secrets = ["pw-9f2", "tok-77a", "cookie-5c1", "refresh-31", "key-0d4", "card-1234"]
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path), replay_redact_field=["card"])
        flow = timed_flow(b"/login?api_key=key-0d4&page=1", 100.0, "a", body=b'{"user": "ada", "password": "pw-9f2"}')
        assert flow.response is not None
        flow.request.headers["Content-Type"] = "application/json"
        flow.request.headers["Cookie"] = "sid=cookie-5c1"
        flow.response.headers["Content-Type"] = "application/json"
        flow.response.headers["Set-Cookie"] = "sid=cookie-5c1; HttpOnly"
        flow.response.content = (b'{"data": {"access_token": "tok-77a", "refresh_token": "refresh-31",'
                                 b' "card": "card-1234"}}')
        recorder.response(flow)
        then = timed_flow(b"/me", 101.0, "a")
        then.request.headers["Authorization"] = "Bearer tok-77a"
        recorder.response(then)
        recorder.pipeline.finish()
    files = list(tmp_path.rglob("*"))
    for path in (p for p in files if p.is_file()):
        for secret in secrets:
            assert secret.encode() not in path.read_bytes(), (secret, path)
    first, second = load_recordings(tmp_path)[0].requests
    assert first.response is not None and first.response.body is not None
    token = orjson.loads(first.response.body.to_bytes())["data"]["access_token"]
    # The token handed out and the token sent back share one placeholder.
    assert PLACEHOLDER.fullmatch(token) and dict(second.headers)["Authorization"] == f"Bearer {token}"
    assert first.path.startswith("/login?api_key=%C2%ABredacted:") and first.path.endswith("&page=1")
    assert recorder.pipeline.redactor is not None
    assert dict(first.headers)["Cookie"] == f"sid={recorder.pipeline.redactor.placeholder('cookie-5c1')}"


def test_credentials_outside_named_fields_are_redacted_by_their_look(tmp_path: Path) -> None:
    jwt = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhZGEiLCJzY29wZSI6ImNhcnQifQ"
           ".c2lnbmF0dXJlLW9mLWFkYQ")
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        page = timed_flow(b"/", 100.0, "a")
        assert page.response is not None
        page.response.headers["Content-Type"] = "text/html"
        page.response.content = f'<script>const jwt = "{jwt}";</script><a href="/magic/{jwt}">in</a>'.encode()
        recorder.response(page)
        link = timed_flow(f"/magic/{jwt}".encode(), 101.0, "a")
        link.request.headers["Authorization"] = f"Bearer {jwt}"
        assert link.response is not None
        link.response.headers["Location"] = "https://ada:pw-77c@internal.example/"
        recorder.response(link)
        recorder.pipeline.finish()
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert jwt.encode() not in path.read_bytes() and b"pw-77c" not in path.read_bytes(), path
    first, second = load_recordings(tmp_path)[0].requests
    assert first.response is not None and first.response.body is not None
    (p,) = set(PLACEHOLDER.findall(first.response.body.to_bytes().decode()))
    # Handed out in the page, sent back in the path and the header: one placeholder.
    assert second.path == f"/magic/%C2%ABredacted:{p}%C2%BB"
    assert dict(second.headers)["Authorization"] == f"Bearer «redacted:{p}»"
    assert second.response is not None and dict(second.response.headers)["Location"].startswith(
        "https://ada:%C2%ABredacted:")


def test_a_compressed_request_body_is_redacted_decoded(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        flow = timed_flow(b"/login", 100.0, "a")
        flow.request.headers["Content-Type"] = "application/x-www-form-urlencoded"
        flow.request.headers["Content-Encoding"] = "gzip"
        flow.request.raw_content = gzip.compress(b"user=ada&password=pw-9f2")
        recorder.response(flow)
        recorder.pipeline.finish()
    request = load_recordings(tmp_path)[0].requests[0]
    assert request.body is not None and request.body.to_bytes().startswith(b"user=ada&password=%C2%ABredacted:")
    assert "content-encoding" not in {k.lower() for k, _ in request.headers}


def test_no_redact_keeps_values_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()

    async def run() -> None:
        with taddons.context(recorder) as tctx:
            tctx.configure(recorder, replay_dir=str(tmp_path), replay_redact=False)
            recorder.running()
            flow = timed_flow(b"/login", 100.0, "a", body=b"password=pw-9f2")
            flow.request.headers["Content-Type"] = "application/x-www-form-urlencoded"
            recorder.response(flow)
            recorder.response(tflow.twebsocketflow())
            await recorder.done()

    asyncio.run(run())
    err = capsys.readouterr().err
    assert "WARNING: redaction is off" in err
    assert "1 requests recorded in 1 sessions" in err and "(1 skipped: 1 websocket)" in err
    body = load_recordings(tmp_path)[0].requests[0].body
    assert body is not None and body.to_bytes() == b"password=pw-9f2"
    assert not (tmp_path / ID_FILE).exists() and not (tmp_path / LEGACY_KEY_FILE).exists()  # no key was needed


@pytest.mark.parametrize(("option", "value", "message"), [
    ("replay_session_key", "ip", "replay_session_key: 'ip' is not 'client'"),
    ("replay_max_session", "-1", "replay_max_session: '-1' must be more than 0"),
    ("replay_allow_host", ["http://shop"], "replay_allow_host: 'http://shop' is not a host name"),
    ("replay_exclude", ["(unclosed"], "replay_exclude: '\\(unclosed' is not a regular expression"),
])
def test_bad_recording_options_are_refused(tmp_path: Path, option: str, value: object, message: str) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(recorder, **{option: value})


def test_non_http_flows_are_counted_never_recorded(tmp_path: Path) -> None:
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, replay_dir=str(tmp_path))
        recorder.tcp_start(tflow.ttcpflow())
        recorder.udp_start(tflow.tudpflow())
        recorder.dns_request(tflow.tdnsflow())
        websocket = tflow.twebsocketflow()
        recorder.response(websocket)
        websocket.error = flow_error = tflow.terr()
        assert flow_error is not None
        recorder.error(websocket)  # its end is not counted twice
    assert recorder.pipeline.skips == {"non-http": 3, "websocket": 1} and recorder.pipeline.flows == 0


def test_a_failed_update_creates_nothing_where_the_restored_values_point(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # mitmproxy configures the previous values again after a failed update: here the default
    # "recordings", relative to the working directory, which must not appear.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / LEGACY_KEY_FILE).write_text("not a key\n")
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError, match="redaction key"):
            tctx.configure(recorder, replay_dir=str(tmp_path / "rec"))
    assert not (tmp_path / "recordings").exists()
