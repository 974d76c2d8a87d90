"""Secrets asked for up front: inspect lists them, a replay missing one refuses to start and sends nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from traffic_replay.correlation import detect
from traffic_replay.correlation.secrets import Secret, missing_secrets, needed_secrets, session_secrets
from traffic_replay.format import Response, Session, replace, write_session

from factories import answered, make_request, make_session
from processes import target_log

pytestmark = pytest.mark.timeout(90)

PASSWORD = "«redacted:0a1b2c3d»"
VARIABLE = "REPLAY_SECRET_0A1B2C3D"
SID = "«redacted:5e6f7a8b»"  # the session cookie, redacted too: the cookie jar's, never a secret to supply


def replay(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``replay ARGS`` as a user types it, with no ``REPLAY_*`` variables leaking in from the test run."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**clean, **(env or {})})


def _login_session() -> Session:
    """The demo target's form login, as the recorder writes it: the password redacted, percent-encoded."""
    form = make_request("/login", offset_ms=0)
    form_type = "application/x-www-form-urlencoded"
    login = make_request("/login", "POST", status=302, offset_ms=10, content_type=form_type,
                         body=b"username=lin&password=%C2%ABredacted%3A0a1b2c3d%C2%BB",
                         headers=[("Host", "127.0.0.1:8000"), ("Content-Type", form_type)])
    login = replace(login, response=Response(status=302, duration_ms=1, headers=[
        ("Location", "/account"), ("Set-Cookie", f"demo_sid={SID}; HttpOnly; Path=/")]))
    account = make_request("/account", offset_ms=20,
                           headers=[("Host", "127.0.0.1:8000"), ("Cookie", f"demo_sid={SID}")])
    return make_session([form, login, account], id="login", name="log in")


def _recording(tmp_path: Path) -> Path:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_session(_login_session(), directory)
    return directory


def _run(recordings: Path, host: str, tmp_path: Path, *extra: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return replay("run", str(recordings), "--host", host, "--headless", "-t", "2s", "-u", "1", "--speed", "0", *extra,
                  cwd=tmp_path, env=env)


def _refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and VARIABLE in line and "--data-map" in line, line
    return line


def test_inspect_lists_the_secret_and_its_variable(tmp_path: Path) -> None:
    recordings = _recording(tmp_path)
    report = replay("inspect", str(recordings), "--json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert orjson.loads(report.stdout)["secrets"] == [
        {"placeholder": PASSWORD, "variable": VARIABLE, "session": "log in", "sent_in": ["step 2 body"]}]
    table = replay("inspect", str(recordings), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "1 secret to supply" in table.stdout
    assert VARIABLE in table.stdout and PASSWORD in table.stdout and "step 2 body" in table.stdout


def test_a_replay_missing_a_secret_refuses_to_start_and_sends_nothing(demo_target: str, tmp_path: Path) -> None:
    recordings = _recording(tmp_path)
    line = _refusal(_run(recordings, demo_target, tmp_path, "--summary-json", str(tmp_path / "summary.json")))
    assert "session 'log in' step 2 body" in line, line
    assert not (tmp_path / "summary.json").exists(), "Locust never started"
    _refusal(_run(recordings, demo_target, tmp_path, "--dry-run"))
    _refusal(_run(recordings, demo_target, tmp_path, "--master", "--expect-workers", "1"))
    assert target_log(demo_target) == [], "not a request, not even the preflight check's"


def test_with_the_secret_supplied_it_runs_and_sends_it(demo_target: str, tmp_path: Path) -> None:
    result = _run(_recording(tmp_path), demo_target, tmp_path, env={VARIABLE: "demo"})
    assert result.returncode == 0, result.stderr[-3000:]
    logins = [e for e in target_log(demo_target) if e["method"] == "POST"]
    assert logins and all(e["body"] == "username=lin&password=demo" and e["status"] == 302 for e in logins), logins
    assert {e["status"] for e in target_log(demo_target) if e["path"] == "/account"} == {200}


def test_a_data_column_mapped_to_the_placeholder_supplies_it(demo_target: str, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("password\ndemo\n")
    result = _run(_recording(tmp_path), demo_target, tmp_path, "--data", str(tmp_path / "users.csv"),
                  "--data-map", f"password={PASSWORD}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(e["body"] == "username=lin&password=demo" for e in target_log(demo_target))


def _token_session() -> Session:
    """A redacted token a response handed out, sent back: correlated, not the user's secret."""
    issued = answered(make_request("/api/token", "POST"), f'{{"access_token": "{PASSWORD}"}}')
    me = make_request("/api/me", offset_ms=10,
                      headers=[("Host", "127.0.0.1:8000"), ("Authorization", f"Bearer {PASSWORD}")])
    return make_session([issued, me])


def test_only_what_no_correlation_no_response_and_no_data_column_supplies_is_needed() -> None:
    login = _login_session()
    [secret] = needed_secrets([login])
    assert secret == Secret(PASSWORD, VARIABLE, "log in", secret.uses)
    assert [(u.step, u.place) for u in secret.uses] == [(1, "body")]
    assert needed_secrets([login], data_map={PASSWORD: "password"}) == []
    assert needed_secrets([_token_session()]) == [] == needed_secrets([_token_session()], correlate=False)
    assert session_secrets(login, detect(login)) == [secret]
    assert missing_secrets([secret], {VARIABLE: ""}) == [], "an empty value is a value"
    assert missing_secrets([secret], {}) == [secret]


def test_a_placeholder_an_answer_spells_with_escapes_is_handed_out_not_asked_for(tmp_path: Path) -> None:
    """``ensure_ascii`` JSON and HTML entities spell « » otherwise: the answer still has the token."""
    token = "«redacted:0a1b2c3d»"
    for spelled, ctype in ((orjson.dumps({"token": token}).decode().replace("«", "\\u00ab").replace("»", "\\u00bb"),
                            "application/json"),
                           ('<input type="hidden" name="t" value="&laquo;redacted:0a1b2c3d&raquo;">', "text/html")):
        login = answered(make_request("/login", "POST"), spelled, ctype)
        use = make_request("/account", offset_ms=10, headers=[("Host", "127.0.0.1:8000"), ("X-Token", token)])
        assert needed_secrets([make_session([login, use])]) == []
    assert [s.env for s in needed_secrets([make_session([use])])] == ["REPLAY_SECRET_0A1B2C3D"]
