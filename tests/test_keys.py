"""Redaction keys: in the user's config directory (never the recordings'), named by the directory's id,
shared only on purpose, old in-directory keys moved out; and ``replay import`` end to end."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from recorder.keys import ID_FILE, LEGACY_KEY_FILE, config_home, key_path, keys_dir, load_key
from recorder.redaction import Redactor
from traffic_replay.errors import RedactionKeyError
from traffic_replay.format import load_recordings

from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _no_file_holds(directory: Path, key: bytes) -> None:
    for path in (p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert key not in data and key.hex().encode() not in data, path


def test_the_key_lives_in_the_config_directory_and_the_recordings_hold_only_its_name(
        tmp_path: Path, config_home: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    key = load_key(rec)
    assert len(key) == 32 and load_key(rec) == key
    assert [p.name for p in rec.iterdir()] == [ID_FILE]
    rid = (rec / ID_FILE).read_text().strip()
    stored = config_home / "traffic-replay" / "keys" / rid
    assert key_path(rec) == stored and bytes.fromhex(stored.read_text().strip()) == key
    assert _mode(stored) == 0o600 and _mode(stored.parent) == 0o700 and _mode(stored.parent.parent) == 0o700
    assert [p.name for p in stored.parent.iterdir()] == [rid]  # no temp file left behind
    _no_file_holds(rec, key)


def test_the_config_directory_is_xdg_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_home({"XDG_CONFIG_HOME": "/etc/xdg-elsewhere"}) == Path("/etc/xdg-elsewhere")
    for unusable in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "relative/dir"}):  # as the XDG spec says
        assert keys_dir(unusable) == tmp_path / ".config" / "traffic-replay" / "keys"


def test_a_loose_keys_directory_is_tightened(tmp_path: Path, config_home: Path) -> None:
    (config_home / "traffic-replay" / "keys").mkdir(parents=True, mode=0o755)
    (config_home / "traffic-replay" / "keys").chmod(0o755)
    rec = tmp_path / "rec"
    rec.mkdir()
    load_key(rec)
    assert _mode(config_home / "traffic-replay" / "keys") == 0o700


def test_a_copy_elsewhere_gets_other_placeholders_unless_the_key_is_shared(tmp_path: Path, config_home: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    here = load_key(rec)
    copy = tmp_path / "copy"
    shutil.copytree(rec, copy)  # zipped, mailed, unzipped on another machine
    assert load_key(copy) == here  # the same machine: the same id names the same key
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-machine"))
    there = load_key(copy)
    assert there != here and Redactor(there).placeholder("hunter2") != Redactor(here).placeholder("hunter2")
    # Shared on purpose: the key file given, or copied under the same name.
    assert load_key(copy, key_file=config_home / "traffic-replay" / "keys" / (rec / ID_FILE).read_text().strip()) \
        == here
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "third-machine"))
    (tmp_path / "third-machine" / "traffic-replay" / "keys").mkdir(parents=True)
    shutil.copy(key_path(rec, {"XDG_CONFIG_HOME": str(config_home)}), key_path(copy))
    assert load_key(copy) == here


def test_a_shared_key_file_is_created_once_and_says_so(tmp_path: Path) -> None:
    rec, notes = tmp_path / "rec", []
    rec.mkdir()
    team = tmp_path / "team.key"
    key = load_key(rec, key_file=team, note=notes.append)
    assert load_key(rec, key_file=team, note=notes.append) == key and _mode(team) == 0o600
    assert notes == [f"replay: created the redaction key {team} (give the same file to share its placeholders)"]
    assert list(rec.iterdir()) == []  # nothing of the directory's own is needed
    team.chmod(0o644)
    load_key(rec, key_file=team, note=notes.append)
    assert notes[-1] == f"replay: WARNING: the redaction key {team} can be read by others: chmod 600 it"


def test_an_old_key_moves_out_of_the_recordings_directory_and_keeps_its_placeholders(
        tmp_path: Path, config_home: Path) -> None:
    rec, notes = tmp_path / "rec", []
    rec.mkdir()
    old = secrets.token_bytes(32)
    (rec / LEGACY_KEY_FILE).write_text(old.hex() + "\n")
    assert load_key(rec, note=notes.append) == old
    assert not (rec / LEGACY_KEY_FILE).exists() and [p.name for p in rec.iterdir()] == [ID_FILE]
    stored = key_path(rec)
    assert stored.parent.parent.parent == config_home and _mode(stored) == 0o600
    assert notes == [f"replay: moved the redaction key out of {rec}/ to {stored}: keys no longer travel with "
                     "recordings"]
    assert load_key(rec, note=notes.append) == old and len(notes) == 1  # said once: there is nothing left to move
    _no_file_holds(rec, old)


def test_two_keys_for_one_directory_are_the_user_s_call(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    key = load_key(rec)
    (rec / LEGACY_KEY_FILE).write_text(key.hex())
    assert load_key(rec) == key and not (rec / LEGACY_KEY_FILE).exists()  # the same key: only the copy goes
    (rec / LEGACY_KEY_FILE).write_text(secrets.token_hex(32))
    with pytest.raises(RedactionKeyError, match=r"\.redaction-key: an old redaction key, different from"):
        load_key(rec)


@pytest.mark.parametrize(("where", "content", "message"), [
    (LEGACY_KEY_FILE, "not a key\n", r"rec/\.redaction-key: not a redaction key \(64 hex digits expected\)"),
    (ID_FILE, "../../../etc/passwd\n", r"rec/\.recording-id: not a recording id \(32 hex digits expected\)"),
    (ID_FILE, "ab" * 16 + "\n" + "x", r"rec/\.recording-id: not a recording id"),
    ("store", "00" * 31 + "\n", r"keys/[0-9a-f]{32}: not a redaction key"),
    ("store", b"\xff\xfe garbage", r"keys/[0-9a-f]{32}: not a redaction key"),
    ("store-dir", "", r"keys/[0-9a-f]{32}: cannot read the redaction key: Is a directory"),
])
def test_a_bad_key_or_id_is_one_line_naming_the_file(tmp_path: Path, where: str, content: str | bytes,
                                                     message: str) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    if where.startswith("store"):
        path = keys_dir() / secrets.token_hex(16)
        (rec / ID_FILE).write_text(path.name)
        path.parent.mkdir(parents=True)
        if where == "store-dir":
            path.mkdir()
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    else:
        (rec / where).write_text(str(content))
    with pytest.raises(RedactionKeyError, match=message) as caught:
        load_key(rec)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "etc").exists()


def test_recorders_starting_together_agree_on_one_id_and_key(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_key(rec), range(16)))
    assert len(set(keys)) == 1 and [p.name for p in rec.iterdir()] == [ID_FILE]
    assert [p.name for p in keys_dir().iterdir()] == [(rec / ID_FILE).read_text().strip()]


# --- replay import, end to end ------------------------------------------------------------------------


def _har(path: Path) -> Path:
    def entry(url: str, post: str | None, answer: str) -> dict[str, object]:
        request: dict[str, object] = {"method": "POST" if post else "GET", "url": url, "httpVersion": "HTTP/1.1",
                                      "headers": [{"name": "User-Agent", "value": "keys-test"}], "cookies": [],
                                      "queryString": [], "headersSize": -1, "bodySize": -1}
        if post:
            request["postData"] = {"mimeType": "application/json", "text": post}
        return {"startedDateTime": "2026-01-02T10:00:00.000+01:00", "time": 5, "request": request,
                "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1", "cookies": [],
                             "headers": [{"name": "Content-Type", "value": "application/json"}],
                             "content": {"size": len(answer), "mimeType": "application/json", "text": answer},
                             "redirectURL": "", "headersSize": -1, "bodySize": -1},
                "cache": {}, "timings": {"send": 1, "wait": 3, "receive": 1}}
    har = {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [
        entry("https://shop.example/login", '{"user": "ada", "password": "hunter2"}', '{"token": "tok-5e1"}')]}}
    path.write_bytes(orjson.dumps(har))
    return path


def _import(har: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", "import", str(har), "-o", str(out), *flags],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env={**clean, **(env or {})})


def _placeholders(out: Path) -> tuple[str, str]:
    (request,) = load_recordings(out)[0].requests
    assert request.body is not None and request.response is not None and request.response.body is not None
    return (orjson.loads(request.body.to_bytes())["password"],
            orjson.loads(request.response.body.to_bytes())["token"])


def test_import_keeps_the_key_out_of_the_recordings_and_shares_it_only_on_purpose(
        tmp_path: Path, config_home: Path) -> None:
    har, out = _har(tmp_path / "login.har"), tmp_path / "rec"
    done = _import(har, out)
    assert done.returncode == 0, done.stderr
    first = _placeholders(out)
    key = load_key(out)
    assert first == (Redactor(key).placeholder("hunter2"), Redactor(key).placeholder("tok-5e1"))
    _no_file_holds(out, key)
    assert _mode(key_path(out)) == 0o600 and key_path(out).is_relative_to(config_home)
    # Again into the same directory: the same placeholders.
    assert _import(har, out).returncode == 0 and _placeholders(out) == first
    # The directory copied to another machine (another config directory): unlinkable placeholders...
    copy, elsewhere = tmp_path / "copy", {"XDG_CONFIG_HOME": str(tmp_path / "elsewhere")}
    shutil.copytree(out, copy)
    assert _import(har, copy, env=elsewhere).returncode == 0 and _placeholders(copy) != first
    # ... unless the key is shared: the flag, or the setting's variable.
    shared = _import(har, copy, "--redaction-key-file", str(key_path(out)), env=elsewhere)
    assert shared.returncode == 0, shared.stderr
    assert _placeholders(copy) == first
    assert _import(har, copy, env={**elsewhere, "REPLAY_REDACTION_KEY_FILE": str(key_path(out))}).returncode == 0
    assert _placeholders(copy) == first


def test_import_moves_an_old_key_out_with_one_line(tmp_path: Path) -> None:
    har, out = _har(tmp_path / "login.har"), tmp_path / "rec"
    out.mkdir()
    old = secrets.token_bytes(32)
    (out / LEGACY_KEY_FILE).write_text(old.hex() + "\n")
    done = _import(har, out)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("moved the redaction key out of") == 1
    assert not (out / LEGACY_KEY_FILE).exists() and _placeholders(out)[0] == Redactor(old).placeholder("hunter2")


def test_import_with_a_bad_key_is_one_error_line(tmp_path: Path) -> None:
    har, out = _har(tmp_path / "login.har"), tmp_path / "rec"
    out.mkdir()
    (out / LEGACY_KEY_FILE).write_text("not a key\n")
    done = _import(har, out)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {out / LEGACY_KEY_FILE}: not a redaction key")
