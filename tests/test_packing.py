"""Sessions packed as ``replay run`` reads them: in one process or two, what it finds is what loading finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_loader_fuzz import base_session

from replayer.prepared import starts
from traffic_replay import packing
from traffic_replay.checks import probe_hosts, probe_requests
from traffic_replay.correlation.secrets import needed_secrets
from traffic_replay.errors import RecordingError, RecordingsInvalid
from traffic_replay.fanout import cores
from traffic_replay.format import read_recordings
from traffic_replay.hosts import primary_host
from traffic_replay.naming import StatsNamer
from traffic_replay.packing import Look, Recorded, read_packed
from traffic_replay.recorded import recorded_endpoints

pytestmark = pytest.mark.timeout(60)


def _recording(tmp_path: Path) -> Path:
    """Good sessions on two hosts (one sends a redacted password), a bad one of each kind, an empty one."""
    documents: list[Any] = [base_session(n) for n in range(8)]
    for n in (2, 5, 6):
        for request in documents[n]["requests"]:
            request["host"], request["port"] = "api.example", 443
    documents[3]["started_at"] = "2026-01-02T10:00:07Z"
    documents[4]["requests"][0]["port"] = "8000"
    documents[6]["requests"][1]["headers"].append(["X-Bad", "a\nb"])
    documents[7]["requests"] = []
    documents[3]["requests"][1].update(path="/public", headers=[])  # what the preflight check may probe
    directory = tmp_path / "rec"
    directory.mkdir()
    for n, document in enumerate(documents):
        (directory / f"s{n}.json").write_text(json.dumps(document))
    (directory / "s9.json").write_text('{"format_version": 1, "id": ')
    return directory


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    if cores() < 2:
        pytest.skip("one core: nothing to fork for")
    monkeypatch.setattr(packing, "FORK_FROM_BYTES", 0)


def test_two_processes_find_what_one_finds_and_what_loading_finds(tmp_path: Path, forking: None) -> None:
    directory = _recording(tmp_path)
    look = Look(namer=StatsNamer())
    one, two = read_packed(directory, look, skip_bad=True), read_packed(directory, look, skip_bad=True, fork=True)
    loaded = read_recordings(directory, skip_bad=True)
    assert [str(e) for e in one.skipped] == [str(e) for e in two.skipped] == [str(e) for e in loaded.skipped] == [
        f"{directory / 's4.json'}: field 'requests.0.port': Expected `int`, got `str`",
        f"{directory / 's6.json'}: field 'requests.1.headers.2': the header's value has a line break or control "
        "character",
        f"{directory / 's9.json'}: not valid JSON: Input data was truncated"]
    assert list(Recorded(one.sessions)) == list(Recorded(two.sessions)) == loaded.sessions
    replayed = [s for s in loaded.sessions if s.requests]
    assert [p.start for p in two.sessions if p.requests] == list(starts(replayed)) == [0.0, 0.0, 0.0, 7.0, 0.0]
    assert [(p.id, p.name, p.weight, p.requests) for p in two.sessions] == [
        (s.id, s.name, s.weight, len(s.requests)) for s in loaded.sessions]
    assert one.primary == two.primary == primary_host(loaded.sessions) == "127.0.0.1:8000"
    assert one.secrets == two.secrets == needed_secrets(loaded.sessions)
    assert len(two.secrets) == 5, "each good session sends the redacted password"
    assert one.endpoints == two.endpoints == recorded_endpoints(loaded.sessions, StatsNamer())


def test_the_preflight_check_reads_again_only_the_sessions_it_may_probe(tmp_path: Path, forking: None) -> None:
    directory = _recording(tmp_path)
    found = read_packed(directory, Look(probe=probe_hosts), skip_bad=True, fork=True)
    assert found.probing is not None and found.probing.any_get
    assert [found.sessions[i].id for i in found.probing.candidates] == ["s3"]
    candidates = Recorded([found.sessions[i] for i in found.probing.candidates])
    loaded = read_recordings(directory, skip_bad=True).sessions
    assert probe_requests(candidates, primary=found.primary) == probe_requests(loaded) == [("GET", "/public")]


def test_bad_files_stop_the_read_with_every_one_named_as_loading_names_them(tmp_path: Path, forking: None) -> None:
    directory = _recording(tmp_path)
    with pytest.raises(RecordingsInvalid) as loading:
        read_recordings(directory)
    with pytest.raises(RecordingsInvalid) as packed:
        read_packed(directory, Look(), fork=True)
    assert packed.value.lines() == loading.value.lines() and len(packed.value.lines()) == 3
    for path in directory.glob("*.json"):
        if path.name != "s7.json":
            path.unlink()
    with pytest.raises(RecordingError, match="every session file is empty"):
        read_packed(directory, Look(), fork=True)


def test_a_packed_recording_is_a_twentieth_of_its_files(tmp_path: Path) -> None:
    """What a replay holds of a session until it prepares it: its file, compressed."""
    directory = tmp_path / "rec"
    directory.mkdir()
    for n in range(50):
        document = base_session(n)
        document["requests"] *= 50  # a session repeats its headers and its shapes
        (directory / f"s{n}.json").write_text(json.dumps(document))
    found = read_packed(directory, Look())
    on_disk = sum(p.stat().st_size for p in directory.glob("*.json"))
    assert sum(len(p.data) for p in found.sessions) < on_disk / 20
