"""A long session compressed a run of request lines at a time and decoded so (``traffic_replay.piecewise``).

The pieces must be the file: decompressed whole they are its bytes, decoded piece by piece
they are its requests, at every count of requests around a piece's edge; a session prepared
from them sends what the session decoded whole sends, and asks for the same secrets.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import pytest
from test_loading import _long_session, _sent

from replayer import steps as steps_module
from replayer.loading import prepared_sessions
from replayer.prepared import prepare_session
from traffic_replay import piecewise
from traffic_replay.correlation.cache import AnalysisCache
from traffic_replay.correlation.secrets import session_secrets
from traffic_replay.format import Session, decode_session, dump_session, file_digest, replace
from traffic_replay.packing import Unpacker, pack
from traffic_replay.payload import Workload
from traffic_replay.settings import Settings
from traffic_replay.sharing import Shared

from factories import answered, make_request

pytestmark = pytest.mark.timeout(60)

PASSWORD = "«redacted:0a1b2c3d»"
ISSUED = "«redacted:5e6f7a8b»"


def _with_placeholders(session: Session) -> Session:
    """A redacted password sent late in the session (a secret), and a token an answer hands out (escaped as
    ensure_ascii JSON writes it) then sent back (not a secret)."""
    requests = list(session.requests)
    requests[1_234] = replace(requests[1_234], body=piecewise_body(f'{{"password": "{PASSWORD}"}}'))
    requests[1_500] = answered(requests[1_500], '{"sid": "\\u00abredacted:5e6f7a8b\\u00bb"}')
    requests[1_501] = replace(requests[1_501], headers=[*requests[1_501].headers, ("X-Sid", ISSUED)])
    return replace(session, requests=requests)


def piecewise_body(text: str) -> object:
    return make_request("/x", "POST", body=text.encode(), content_type="application/json").body


@pytest.mark.parametrize("requests", [piecewise.PIECEWISE_FROM, 2_099, 2_100, 2_101, 2_250])
def test_the_pieces_are_the_file_and_its_requests(requests: int) -> None:
    session = _with_placeholders(_long_session(requests))
    raw = dump_session(session)
    data, marks = piecewise.compress(raw, 1, requests)
    assert zlib.decompress(data) == raw
    assert len(marks) == 1 + -(-requests // piecewise.LINES_PER_PIECE)  # the head, then a piece per 100 lines
    lazy = piecewise.session(memoryview(data), marks, requests, Shared())
    whole = decode_session(raw, Shared())
    assert isinstance(lazy.requests, piecewise.Requests) and len(lazy.requests) == requests
    assert msgspec.json.encode(replace(lazy, requests=list(lazy.requests))) == msgspec.json.encode(whole)
    # Taken out of order, from the end and by slice, as a backwards slice of steps takes them.
    assert lazy.requests[-1] == whole.requests[-1] and lazy.requests[150] == whole.requests[150]
    assert lazy.requests[99:102] == whole.requests[99:102] and lazy.requests[3] == whole.requests[3]
    with pytest.raises(IndexError):
        lazy.requests[requests]


def test_placeholders_are_found_where_they_are_without_decoding_the_rest() -> None:
    session = _with_placeholders(_long_session(2_300))
    raw = dump_session(session)
    # The same file, with the password's letters escaped (valid JSON no writer of ours makes): its bytes
    # then have no "redacted" in them, and the step must still be found.
    spelled = raw.replace(b"redacted:0a1b2c3d", b"\\u0072edacted:0a1b2c3d")
    assert spelled != raw and decode_session(spelled, Shared()).requests == decode_session(raw, Shared()).requests
    for file in (raw, spelled):
        data, marks = piecewise.compress(file, 1, 2_300)
        lazy = piecewise.session(memoryview(data), marks, 2_300, Shared())
        assert isinstance(lazy.requests, piecewise.Requests)
        assert lazy.requests.placeholder_steps() == [1_234, 1_500, 1_501]
        found = session_secrets(lazy, [], None, lazy.requests.placeholder_steps())
        assert found == session_secrets(session, []) and [s.placeholder for s in found] == [PASSWORD]
        assert [u.step for u in found[0].uses] == [1_234]


def test_short_or_other_layouts_are_compressed_whole() -> None:
    short = dump_session(_long_session(piecewise.PIECEWISE_FROM - 1))
    assert piecewise.compress(short, 1, piecewise.PIECEWISE_FROM - 1)[1] == []
    session = _long_session(2_200)
    indented = msgspec.json.format(dump_session(session), indent=2)
    assert piecewise.compress(indented, 1, 2_200)[1] == []
    raw = dump_session(session)
    two_a_line = raw.replace(b"},\n{", b"},{", 1)  # (still a valid file: not one request a line)
    assert decode_session(two_a_line, Shared()).requests == decode_session(raw, Shared()).requests
    assert piecewise.compress(two_a_line, 1, 2_200)[1] == []


@pytest.mark.parametrize("remembered", [True, False])
def test_a_long_session_prepared_from_its_pieces_sends_what_it_sends_decoded_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remembered: bool) -> None:
    session = _with_placeholders(_long_session(2_300))
    (packed,) = pack([session])
    assert packed.marks
    settings = Settings(recordings=Path("rec"), host="http://127.0.0.1:9", cache_dir=tmp_path)
    if remembered:
        AnalysisCache(tmp_path).analyse(session, file_digest(dump_session(session)))
    environ = {"REPLAY_SECRET_0A1B2C3D": "hunter2"}
    (prepared,) = prepared_sessions(Workload(settings, [packed], "127.0.0.1:8000", secrets=environ))
    builder = prepared.steps._builder
    assert builder is not None and isinstance(builder.requests, piecewise.Requests) is remembered
    monkeypatch.setattr(steps_module, "STEPS_PER_RUN", 10_000)
    whole = prepare_session(Unpacker()(packed), 1.0, correlate=True, environ=environ)
    assert _sent(prepared) == _sent(whole)
    assert prepared.initial == whole.initial and "hunter2" in prepared.initial and prepared.missing is None
    (missing,) = prepared_sessions(Workload(settings, [packed], "127.0.0.1:8000"))
    assert missing.missing is not None and PASSWORD in missing.missing
