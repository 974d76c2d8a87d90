"""The payload: every input of a replay, read once, compressed, digested, and opened again whole or not at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec
import pytest

from traffic_replay import packing
from traffic_replay.errors import ConfigError, PayloadError, RecordingError
from traffic_replay.format import load_recordings, write_session
from traffic_replay.naming import StatsNamer
from traffic_replay.payload import Payload, hand_over, read_workload, take_over
from traffic_replay.recorded import TOTAL, recorded_latency
from traffic_replay.settings import Settings

from factories import make_request, make_session

pytestmark = pytest.mark.timeout(10)


def _inputs(tmp_path: Path) -> Settings:
    recordings = tmp_path / "rec"
    recordings.mkdir()
    write_session(make_session([make_request("/items/1?u=lin")], id="one"), recordings)
    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "h"\nheader = "X-Session"\n')
    (tmp_path / "users.csv").write_text("user\nada\nbob\n")
    return Settings.build(recordings=recordings, host="http://127.0.0.1:9", rules=tmp_path / "rules.toml",
                          data=tmp_path / "users.csv", data_map=["user=lin"], speed=0)


def test_a_workload_travels_whole(tmp_path: Path) -> None:
    settings = _inputs(tmp_path)
    workload = read_workload(settings, {"REPLAY_SECRET_0A1B2C3D": "hunter2", "HOME": "/root"})
    payload = Payload.of(workload)
    recorded = sum(p.stat().st_size for p in settings.recordings.glob("*.json"))
    assert len(payload.blob) < recorded * 0.6 + 2048, "shipped compressed"
    opened = Payload.from_message(payload.message()).open()
    assert opened.settings == settings
    assert list(opened.recorded()) == list(workload.recorded()) == load_recordings(settings.recordings)
    assert opened.rules == workload.rules and opened.primary == "127.0.0.1:8000"
    assert opened.rows == [{"user": "ada"}, {"user": "bob"}]
    assert opened.secrets == {"REPLAY_SECRET_0A1B2C3D": "hunter2"}, "only the secrets, not the whole environment"


def test_a_worker_keeps_only_its_per_machine_settings(tmp_path: Path) -> None:
    payload = Payload.of(read_workload(_inputs(tmp_path)))
    local = Settings.build(master_host="10.1.2.3", speed=5, correlate=False)
    opened = payload.open(local)
    assert opened.settings.master_host == "10.1.2.3"
    assert opened.settings.speed == 0 and opened.settings.correlate is True


def test_a_damaged_or_foreign_payload_is_refused(tmp_path: Path) -> None:
    payload = Payload.of(read_workload(_inputs(tmp_path)))
    flipped = bytes([payload.blob[0] ^ 1]) + payload.blob[1:]
    with pytest.raises(PayloadError, match="damaged"):
        Payload(flipped, payload.digest).open()
    document = msgspec.msgpack.decode(payload.blob)
    document["version"] = 99
    newer = msgspec.msgpack.encode(document)
    with pytest.raises(PayloadError, match="version 99"):
        Payload(newer, hashlib.sha256(newer).hexdigest()).open()
    with pytest.raises(PayloadError, match="no 'blob'"):
        Payload.from_message({"digest": "x"})


def test_bad_inputs_are_named_when_they_are_read(tmp_path: Path) -> None:
    settings = _inputs(tmp_path)
    with pytest.raises(RecordingError, match="no such directory"):
        read_workload(settings.model_copy(update={"recordings": tmp_path / "missing"}))
    with pytest.raises(ConfigError, match="needs --data"):
        read_workload(settings.model_copy(update={"data": None}))


def test_the_payload_is_handed_over_through_an_inherited_memory_file(tmp_path: Path) -> None:
    payload = Payload.of(read_workload(_inputs(tmp_path)))
    env = hand_over(payload)
    fd = int(env["REPLAY_PAYLOAD_FD"])
    assert os.get_inheritable(fd)
    taken = take_over(env)
    assert taken == payload
    with pytest.raises(OSError):
        os.fstat(fd)  # read once, and closed
    assert take_over({}) is None


@pytest.mark.parametrize("forked", [False, True])
def test_the_recorded_latency_is_read_once_with_the_files_and_travels(tmp_path: Path, forked: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The end of a run puts it beside the replayed figures; it used to decode every session again for it.
    recordings = tmp_path / "rec"
    recordings.mkdir()
    for n in range(6):
        write_session(make_session([make_request(f"/items/{n + 1}", duration_ms=10.0 * (n + 1)),
                                    make_request("/cart", method="POST", duration_ms=3.0 + n)], id=f"s{n}"), recordings)
    monkeypatch.setattr(packing, "FORK_FROM_BYTES", 0)
    settings = Settings.build(recordings=recordings, host="http://127.0.0.1:9", speed=0)
    workload = read_workload(settings, {}, fork=forked)
    assert workload.latency == recorded_latency(load_recordings(recordings), StatsNamer())
    assert workload.latency[("GET", "/items/{id}")] == (6, 30.0, 60.0)
    assert workload.latency[("POST", "/cart")] == (6, 5.0, 8.0)
    assert workload.latency[TOTAL].requests == 12
    assert Payload.of(workload).open().latency == workload.latency
