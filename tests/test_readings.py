"""What reading a session file finds, remembered by its content (``traffic_replay.readings``).

A second read of a recording finds exactly what the first found (heads, secrets, hosts,
endpoints, recorded durations, what the preflight check may probe, the bad files' errors)
without decoding a file whose reading is remembered; a changed file, a damaged entry, or
a look that asks more than an entry holds is read afresh; rules and ``--data-map`` are
never remembered. Through ``replay run`` a missing secret is refused alike on every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from test_packing import _recording
from test_secrets_up_front import replay

from traffic_replay.checks import probe_hosts
from traffic_replay.correlation import Rule
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.format import file_digest
from traffic_replay.inspection import inspect_directory
from traffic_replay.naming import StatsNamer
from traffic_replay.packing import Look, Packing, Recorded, read_packed
from traffic_replay.readings import Reading, fingerprint
from traffic_replay.specs import NamePattern

pytestmark = pytest.mark.timeout(60)


def _look(cache: Path | None, **more: object) -> Look:
    named = StatsNamer("template", [NamePattern(r"^/items/", "item")])
    return Look(namer=named, timed=named, probe=probe_hosts, cache=cache, **more)  # type: ignore[arg-type]


def _found(packing: Packing) -> tuple[object, ...]:
    """What a replay takes from a read recording: compared as outputs, sessions decoded."""
    heads = [(p.id, p.name, p.weight, p.start, p.requests, p.digest) for p in packing.sessions]
    return (heads, [str(e) for e in packing.skipped], packing.primary, packing.secrets, packing.endpoints,
            packing.probing, packing.durations, list(Recorded(packing.sessions)))


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "read" / fingerprint()).glob("*.msgpack"))


def test_a_remembered_reading_finds_what_reading_the_files_finds(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    afresh = _found(read_packed(directory, _look(None), skip_bad=True))
    assert not cache.exists()
    filled = _found(read_packed(directory, _look(cache), skip_bad=True))
    assert len(_entries(cache)) == 6  # the five good files and the empty one; never a bad one
    remembered = _found(read_packed(directory, _look(cache), skip_bad=True))
    assert afresh == filled == remembered
    heads, skipped, primary, secrets = afresh[:4]
    assert len(skipped) == 3 and primary == "127.0.0.1:8000" and secrets  # (the recording has all of it)
    assert {("POST", "/login"), ("GET", "item")} <= afresh[4]  # type: ignore[operator]


def test_a_remembered_reading_is_read_instead_of_the_file(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    read_packed(directory, _look(cache), skip_bad=True)
    digest = file_digest((directory / "s0.json").read_bytes())
    (entry,) = [e for e in _entries(cache) if e.name.startswith(digest)]
    reading = msgspec.msgpack.decode(entry.read_bytes(), type=Reading)
    entry.write_bytes(msgspec.msgpack.encode(msgspec.structs.replace(reading, name="only in the cache")))
    names = [p.name for p in read_packed(directory, _look(cache), skip_bad=True).sessions]
    assert names[0] == "only in the cache"
    # Without the cache, or with another naming (a threshold's), the file is read again.
    assert read_packed(directory, _look(None), skip_bad=True).sessions[0].name == "session 0"
    other = Look(timed=StatsNamer("path"), cache=cache)
    assert read_packed(directory, other, skip_bad=True).sessions[0].name == "session 0"


@pytest.mark.parametrize("damage", [b"", b"\x93\x01", b"not msgpack at all"])
def test_a_damaged_entry_is_read_again_and_written_again(tmp_path: Path, damage: bytes) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    first = _found(read_packed(directory, _look(cache), skip_bad=True))
    for entry in _entries(cache):
        entry.write_bytes(damage)
    assert _found(read_packed(directory, _look(cache), skip_bad=True)) == first
    assert all(msgspec.msgpack.decode(e.read_bytes(), type=Reading) for e in _entries(cache))


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    read_packed(directory, _look(cache), skip_bad=True)
    document = json.loads((directory / "s0.json").read_text())
    document["name"] = "renamed"
    document["requests"][0]["body"]["data"] = "user=lin&password=«redacted:99999999»"
    (directory / "s0.json").write_text(json.dumps(document))
    found = read_packed(directory, _look(cache), skip_bad=True)
    assert found.sessions[0].name == "renamed"
    assert [s.placeholder for s in found.secrets if s.session == "renamed"] == ["«redacted:99999999»"]


def test_a_look_asking_more_than_an_entry_holds_reads_the_file(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    named = StatsNamer()
    read_packed(directory, Look(timed=named, cache=cache), skip_bad=True)  # (a run without --check)
    checked = read_packed(directory, Look(timed=named, probe=probe_hosts, cache=cache), skip_bad=True)
    assert checked.probing == read_packed(directory, Look(timed=named, probe=probe_hosts), skip_bad=True).probing
    assert checked.probing is not None and checked.probing.candidates
    assert all(msgspec.msgpack.decode(e.read_bytes(), type=Reading).probe is not None for e in _entries(cache))


def test_rules_and_data_columns_are_never_remembered(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    rule = Rule.model_validate({"name": "token", "json": "token", "inject": ["header:Authorization"]})
    read_packed(directory, _look(cache, rules=[rule]), skip_bad=True)
    read_packed(directory, _look(cache, data_map={"«redacted:0a1b2c3d»": "password"}), skip_bad=True)
    assert not _entries(cache)


def test_a_run_refuses_a_missing_secret_alike_when_the_reading_is_remembered(tmp_path: Path) -> None:
    directory = _recording(tmp_path)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [replay("run", str(directory), "--skip-bad", "--host", "http://127.0.0.1:9", "--dry-run",
                   cwd=tmp_path, env=env) for _ in range(2)]
    assert _entries(tmp_path / "cache" / "traffic-replay")
    for run in runs:
        assert run.returncode != 0 and "Traceback" not in run.stderr
        assert "REPLAY_SECRET_0A1B2C3D" in run.stderr.strip().splitlines()[-1], run.stderr
    assert runs[0].stderr == runs[1].stderr
    ok = [replay("run", str(directory), "--skip-bad", "--host", "http://127.0.0.1:9", "--dry-run", cwd=tmp_path,
                 env={**env, "REPLAY_SECRET_0A1B2C3D": "pw"}) for _ in range(2)]
    assert ok[0].returncode == ok[1].returncode == 0, ok[0].stderr[-2000:]
    assert ok[0].stdout == ok[1].stdout and "/login" in ok[0].stdout


def test_inspect_remembers_what_a_replay_reads_so_its_first_run_decodes_nothing(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    afresh = _found(read_packed(directory, _look(None), skip_bad=True))
    inspect_directory(directory, skip_bad=True, cache=AnalysisCache(cache), look=_look(cache))
    assert len(_entries(cache)) == 6 and not list(cache.glob("read/*/.*"))  # (the good files and the empty one)
    digest = file_digest((directory / "s0.json").read_bytes())
    (entry,) = [e for e in _entries(cache) if e.name.startswith(digest)]
    kept = entry.read_bytes()
    assert _found(read_packed(directory, _look(cache), skip_bad=True)) == afresh
    assert entry.read_bytes() == kept  # read, not written again
    # With rules an inspect's secrets are not a plain run's: nothing is kept then.
    again = tmp_path / "again"
    inspect_directory(directory, [Rule(name="r", json="token")], skip_bad=True,  # type: ignore[call-arg]
                      cache=AnalysisCache(again), look=_look(again))
    assert not (again / "read").exists()


def test_replay_inspect_keeps_what_a_run_of_the_same_naming_reads(tmp_path: Path) -> None:
    directory, cache = _recording(tmp_path), tmp_path / "cache"
    result = replay("inspect", str(directory), "--skip-bad", "--cache-dir", str(cache), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_look = Look(probe=probe_hosts, timed=StatsNamer(), cache=cache)  # as `replay run` reads, by default
    assert len(_entries(cache)) == 6
    assert _found(read_packed(directory, run_look, skip_bad=True)) == \
        _found(read_packed(directory, Look(probe=probe_hosts, timed=StatsNamer()), skip_bad=True))
    assert len(_entries(cache)) == 6  # (nothing new: each was there)
