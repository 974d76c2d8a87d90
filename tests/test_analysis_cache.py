"""What detection finds is remembered by each session file's content (``traffic_replay.correlation.cache``).

Through ``replay`` as a user runs it: the first ``inspect`` fills the cache, the next one
and every ``run`` read it; a changed file, a damaged entry or a cache that cannot be
written are misses, never errors. The target is a fresh database (its first note is id
``1``, as the recording's), so a correlation that is not carried over shows in what it
receives.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from traffic_replay.correlation.cache import fingerprint
from traffic_replay.format import file_digest, session_files, write_session

from factories import answered, make_request, make_session
from processes import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


def _replay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traffic_replay.cli", *args], capture_output=True, text=True,
                          timeout=90, cwd=REPO_ROOT, env=env)


def _recording(directory: Path, port: int = 8000) -> Path:
    """A note created (the server answers its id, 1 on a fresh database) and read back by that id."""
    directory.mkdir(exist_ok=True)
    json = [("Host", f"127.0.0.1:{port}"), ("User-Agent", "notes/1.0"), ("Content-Type", "application/json")]
    write_session(make_session([
        answered(make_request("/api/notes", "POST", port=port, body=b'{"text": "hello"}',
                              content_type="application/json", headers=json), '{"id": 1, "text": "hello"}',
                 status=201),
        answered(make_request("/api/notes/1", port=port, offset_ms=20, headers=json[:2]),
                 '{"id": 1, "text": "hello"}'),
    ]), directory)
    return directory


def _entry(cache: Path, recordings: Path) -> Path:
    (session,) = session_files(recordings)
    return cache / "traffic-replay" / "analysis" / fingerprint() / f"{file_digest(session.read_bytes())}.json"


def _inspected(recordings: Path, *flags: str) -> dict[str, object]:
    result = _replay("inspect", "--json", str(recordings), *flags)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = orjson.loads(result.stdout)
    return report


def _carried(report: dict[str, object]) -> list[tuple[str, list[str], list[str]]]:
    return [(c["value"], c["sources"], c["uses"]) for c in report["correlations"]]  # type: ignore[attr-defined]


DETECTED = [("1", ["step 1 JSON id"], ["step 2 path"])]
ANOTHER = {"correlations": [{"value": "hello", "sources": [[0, "json", "text", "", ""]],
                             "uses": [{"step": 1, "place": "header", "name": "User-Agent"}]}], "rejected": []}
"""An analysis the detector would never make of the recording: read back, it can only come from the cache."""


def test_inspect_remembers_what_it_detected_and_reads_it_back(cache_home: Path, tmp_path: Path) -> None:
    recordings = _recording(tmp_path / "rec")
    first = _inspected(recordings)
    assert _carried(first) == DETECTED
    entry = _entry(cache_home, recordings)
    assert orjson.loads(entry.read_bytes())["correlations"][0]["value"] == "1"
    assert stat.S_IMODE((cache_home / "traffic-replay").stat().st_mode) == 0o700, "it holds recorded values"
    assert _inspected(recordings) == first
    entry.write_bytes(orjson.dumps(ANOTHER))
    assert _carried(_inspected(recordings)) == [("hello", ["step 1 JSON text"], ["step 2 header User-Agent"])]
    assert _carried(_inspected(recordings, "--no-cache")) == DETECTED, "--no-cache detects afresh"
    assert orjson.loads(entry.read_bytes()) == ANOTHER, "--no-cache keeps nothing"


def test_a_changed_file_is_analysed_again(cache_home: Path, tmp_path: Path) -> None:
    recordings = _recording(tmp_path / "rec")
    _inspected(recordings)
    _entry(cache_home, recordings).write_bytes(orjson.dumps(ANOTHER))
    (path,) = session_files(recordings)
    path.write_bytes(path.read_bytes().replace(b'"weight":1.0', b'"weight":2.0'))
    report = _inspected(recordings)
    assert _carried(report) == DETECTED
    assert report["sessions"][0]["weight"] == 2.0  # type: ignore[index]


@pytest.mark.parametrize("damage", [
    b"", b"{not json", b'{"correlations": 3}',
    # Well formed, but about another session: step 7 of a session of two.
    orjson.dumps({"correlations": [{"value": "1", "sources": [[7, "json", "id", "", ""]],
                                    "uses": [{"step": 1, "place": "path"}]}], "rejected": []}),
])
def test_a_damaged_entry_is_a_miss_and_is_written_again(cache_home: Path, tmp_path: Path, damage: bytes) -> None:
    recordings = _recording(tmp_path / "rec")
    expected = _inspected(recordings)
    entry = _entry(cache_home, recordings)
    entry.write_bytes(damage)
    assert _inspected(recordings) == expected
    assert orjson.loads(entry.read_bytes())["correlations"][0]["value"] == "1"


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    recordings = _recording(tmp_path / "rec")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert _carried(_inspected(recordings, "--cache-dir", str(blocked / "cache"))) == DETECTED
    assert blocked.read_text() == "not a directory"


class Notes(ThreadingHTTPServer):
    """A fresh notes database: ``POST /api/notes`` answers the next id from 1, ``GET /api/notes/N`` reads one."""

    daemon_threads = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: list[int] = []
        self.read: list[str] = []
        super().__init__(("127.0.0.1", 0), _NotesHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _NotesHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Notes

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.created.append(len(self.server.created) + 1)
            note = self.server.created[-1]
        self._answer(201, b'{"id": %d, "text": "hello"}' % note)

    def do_GET(self) -> None:  # noqa: N802
        with self.server.lock:
            self.server.read.append(self.path)
        found = re.fullmatch(r"/api/notes/(\d+)", self.path)
        exists = found is not None and int(found[1]) in self.server.created
        self._answer(200 if exists else 404, b'{"id": %s}' % (found[1].encode() if found else b"0"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def notes() -> Iterator[Notes]:
    server = Notes()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _run(recordings: Path, notes: Notes, *flags: str) -> list[str]:
    """A short run of two users; the notes it read, in order."""
    notes.created.clear()
    notes.read.clear()
    result = _replay("run", str(recordings), "--host", notes.url, "--headless", "--no-check", "-u", "2", "-r", "10",
                     "-t", "2s", "--speed", "4", *flags)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert len(notes.created) >= 4, result.stderr[-3000:]
    return list(notes.read)


def test_a_run_reads_what_inspect_remembered(cache_home: Path, tmp_path: Path, notes: Notes) -> None:
    recordings = _recording(tmp_path / "rec", port=int(notes.url.rsplit(":", 1)[1]))
    _inspected(recordings)
    read = _run(recordings, notes)
    assert len(set(read)) >= 4 and set(read) <= {f"/api/notes/{n}" for n in notes.created}, read
    # Remembered as carrying nothing: the run sends the recorded id, as only a run that reads the cache would.
    _entry(cache_home, recordings).write_bytes(orjson.dumps({"correlations": [], "rejected": []}))
    assert set(_run(recordings, notes)) == {"/api/notes/1"}
    read = _run(recordings, notes, "--no-cache")
    assert len(set(read)) >= 4 and set(read) <= {f"/api/notes/{n}" for n in notes.created}, read


def test_a_run_fills_the_cache_for_the_next(cache_home: Path, tmp_path: Path, notes: Notes) -> None:
    recordings = _recording(tmp_path / "rec", port=int(notes.url.rsplit(":", 1)[1]))
    _run(recordings, notes, "--no-cache")
    assert not (cache_home / "traffic-replay").exists()
    _run(recordings, notes)
    assert orjson.loads(_entry(cache_home, recordings).read_bytes())["correlations"][0]["value"] == "1"
