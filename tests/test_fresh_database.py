"""Ids and names as a fresh database hands them out, recorded through the real recorder and replayed.

Each shape's session logs in, creates an object, opens, changes and deletes it (a file: creates,
opens, moves it into ``done/``, opens and deletes it there). Recorded against a fresh
``fresh_target`` (the first object is ``1``, the first user is ``1`` too, the first file
``untitled.txt``) and replayed against the same server, which now hands out new ids and names:
every replayed request must touch the object that the same virtual user created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from processes import REPO_ROOT, interrupt, start_process, start_recorder, stop_process

pytestmark = pytest.mark.timeout(180)

ID_SHAPES = ["n1", "n7", "n42", "n1001", "uuid", "ulid", "objectid", "relay", "code"]
NAME_KINDS = ["txt", "txt3", "folder"]
FIRST = {"n1": "1", "n7": "7", "n42": "42", "n1001": "1001", "relay": "SXRlbTox", "txt": "untitled.txt",
         "txt3": "untitled3.txt", "folder": "Untitled Folder"}


@pytest.fixture(scope="module")
def fresh_target() -> Iterator[str]:
    proc, match = start_process([sys.executable, str(REPO_ROOT / "tests" / "fresh_target.py"), "--port", "0"],
                                r"listening on (\S+)")
    try:
        yield match.group(1)
    finally:
        stop_process(proc)


def _log(base: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(f"{base}/_log", timeout=10).json()["requests"]
    return entries


def _use_objects(client: httpx.Client, base: str, shape: str) -> str:
    token = client.post(f"{base}/api/login", json={"username": f"rec-{shape}"}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post(f"{base}/api/{shape}/objects", json={"title": "first"}, headers=auth)
    assert created.status_code == 201
    oid = str(created.json()["id"])
    url = f"{base}/api/{shape}/objects/{quote(oid, safe='')}"
    assert client.get(url, headers=auth).status_code == 200
    assert client.patch(url, json={"title": "renamed", "quantity": 1}, headers=auth).status_code == 200
    assert client.delete(url, headers=auth).status_code == 204
    return oid


def _use_files(client: httpx.Client, base: str, kind: str) -> str:
    token = client.post(f"{base}/api/login", json={"username": f"rec-{kind}"}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post(f"{base}/api/files/{kind}", headers=auth)
    assert created.status_code == 201
    name = created.json()["path"]
    url = f"{base}/api/files/{kind}"
    assert client.get(f"{url}/{quote(name)}", headers=auth).status_code == 200
    assert client.patch(f"{url}/{quote(name)}", json={"path": f"done/{name}"}, headers=auth).status_code == 200
    assert client.get(f"{url}/done/{quote(name)}", headers=auth).status_code == 200
    assert client.delete(f"{url}/done/{quote(name)}", headers=auth).status_code == 204
    return str(name)


@pytest.fixture(scope="module")
def recorded(fresh_target: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One session per shape, recorded through the real recorder in reverse mode: a fresh database's first ids."""
    out = tmp_path_factory.mktemp("fresh") / "recordings"
    proc, port = start_recorder(out, "--mode", f"reverse:{fresh_target}")
    first: dict[str, str] = {}
    try:
        proxy = f"http://127.0.0.1:{port}"
        for shape in ID_SHAPES + NAME_KINDS:
            # One client per shape: its own User-Agent makes it a session of its own.
            with httpx.Client(headers={"User-Agent": f"fresh-{shape}/1.0"}, trust_env=False, timeout=10) as client:
                first[shape] = (_use_files if shape in NAME_KINDS else _use_objects)(client, proxy, shape)
        summary = interrupt(proc)
    finally:
        stop_process(proc)
    assert f"in {len(ID_SHAPES) + len(NAME_KINDS)} sessions" in summary, summary
    # The recording holds what a fresh installation hands out first: the point of the test.
    assert {k: first[k] for k in FIRST} == FIRST
    return out


def _replay(recordings: Path, host: str, tmp: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_") and k != "BASE_URL"}
    summary = tmp / "summary.json"
    result = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "run", str(recordings), "--host", host,
                             "--headless", "-u", "4", "-r", "4", "-t", "6s", "--speed", "0",
                             "--summary-json", str(summary)],
                            capture_output=True, text=True, timeout=120, cwd=tmp, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = orjson.loads(summary.read_bytes())
    return loaded


def test_every_replayed_use_touches_the_object_its_own_user_created(recorded: Path, fresh_target: str,
                                                                     tmp_path: Path) -> None:
    before = len(_log(fresh_target))
    summary = _replay(recorded, fresh_target, tmp_path)
    replayed = _log(fresh_target)[before:]
    assert replayed, "the replay sent nothing"
    by_shape: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in replayed:
        parts = entry["path"].split("/")
        if len(parts) > 3 and parts[1] == "api":
            by_shape[parts[3] if parts[2] == "files" else parts[2]].append(entry)
    problems = [f"{e['method']} {e['path']} by user {e['user']}: {e['status']}, owner {e['owner']}"
                for e in replayed if e["path"] != "/api/login" and (e["status"] >= 400 or e["owner"] != e["user"])]
    assert not problems, f"{len(problems)} requests touched another user's or a missing object:\n" + "\n".join(
        problems[:20])
    for shape in ID_SHAPES + NAME_KINDS:
        created = Counter(e["user"] for e in by_shape[shape] if e["method"] == "POST")
        touched = {e["object"] for e in by_shape[shape]}
        # Each replay of the session made an object of its own, and only its user ever touched it.
        assert len(created) >= 2 and set(created.values()) == {1}, (shape, created)
        assert FIRST.get(shape) not in touched, (shape, "the recorded id went out verbatim")
        # A file is touched under its name and under done/NAME (the last replays may be cut short).
        assert len(touched) > len(created) if shape in NAME_KINDS else len(touched) == len(created), (
            shape, created, sorted(map(str, touched)))
    assert summary["sessions"]["failed"] == 0, summary["sessions"]


def _choose_things(client: httpx.Client, base: str) -> None:
    """What the client chose and the server echoed: page, size, a language, a typed quantity and name."""
    login = client.post(f"{base}/api/login", json={"username": "dora.k"}).json()
    auth = {"Authorization": f"Bearer {login['token']}"}
    for page in (1, 2, 2):
        client.get(f"{base}/api/items", params={"page": page, "size": 20, "lang": "en"}, headers=auth)
    cart = client.post(f"{base}/api/cart", json={"quantity": 1}, headers=auth).json()
    assert client.patch(f"{base}/api/cart/{cart['id']}", json={"quantity": 1}, headers=auth).status_code == 200
    assert client.get(f"{base}/api/users/dora.k", headers=auth).status_code == 200


def test_what_the_client_chose_is_never_correlated(tmp_path: Path) -> None:
    proc, match = start_process([sys.executable, str(REPO_ROOT / "tests" / "fresh_target.py"), "--port", "0"],
                                r"listening on (\S+)")
    try:
        out = tmp_path / "recordings"
        recorder, port = start_recorder(out, "--mode", f"reverse:{match.group(1)}")
        try:
            with httpx.Client(trust_env=False, timeout=10) as client:
                _choose_things(client, f"http://127.0.0.1:{port}")
            interrupt(recorder)
        finally:
            stop_process(recorder)
    finally:
        stop_process(proc)
    inspected = subprocess.run([sys.executable, "-m", "traffic_replay.cli", "inspect", str(out), "--json"],
                               capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert inspected.returncode == 0, inspected.stderr
    correlations = orjson.loads(inspected.stdout)["correlations"]
    by_value = {c["value"]: c for c in correlations if not c["value"].startswith("«redacted:")}
    # The cart is the server's (its id is 1 on a fresh database, like the typed quantity):
    # carried into the path, never into the quantity the client typed again.
    assert by_value.pop("1")["uses"] == ["step 6 path"]
    assert by_value == {}, by_value
