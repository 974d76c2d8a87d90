"""The session file format: msgspec structs at the edge, JSON on disk.

One JSON file per recorded user session. Files are written atomically (temp file in
the same directory, fsync, rename) so that a reader never sees half a session.
Loading validates every file and reports each bad one with its path and the field
at fault; one bad file never hides the others.

The structs are the one source of truth for the schema (``replay schema``), the
validation and its errors. msgspec decodes JSON straight into them, checking types and
constraints as it goes: with the sharing below, a fifth of pydantic's time and of its peak
memory for the same recording (100,000 requests: 1.1 s and 94 MiB against 5.5 s and 452 MiB),
which is what lets a million recorded requests load in seconds. Like every msgspec struct
they are not validated when built in code, only when decoded: the recorder builds them from
what mitmproxy already parsed, and everything that reads a file decodes it.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct, field

from traffic_replay.errors import RecordingError, RecordingsInvalid, SessionFileError, one_line
from traffic_replay.inputs import read_regular
from traffic_replay.sharing import Shared

FORMAT_VERSION: Literal[1] = 1

Header = tuple[str, str]
METHOD_PATTERN = r"^[A-Z][A-Z0-9_-]*$"
"""What a request's method must match: an importer checks it per entry, before a session holds it."""
Scheme = Literal["http", "https"]

# Content types we keep as readable text; anything else that is not valid UTF-8 goes base64.
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "+json", "+xml", "/xml",
               "application/javascript", "application/graphql", "multipart/form-data")



class Body(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """A message body: UTF-8 text as is, anything else base64."""

    encoding: Literal["text", "base64"]
    data: str
    content_type: str | None = None
    size: Annotated[int, Meta(ge=0, description="Size in bytes of the whole body as sent.")]
    truncated: Annotated[bool, Meta(description="True when only the first bytes were kept (the response cap).")] = False

    @classmethod
    def from_bytes(cls, content: bytes, content_type: str | None, cap: int | None = None) -> Body:
        size = len(content)
        truncated = cap is not None and size > cap
        kept = content[:cap] if truncated else content
        ctype = (content_type or "").lower()
        textual = not ctype or any(t in ctype for t in _TEXT_TYPES)
        if textual:
            try:
                return cls(encoding="text", data=kept.decode("utf-8"), content_type=content_type,
                           size=size, truncated=truncated)
            except UnicodeDecodeError:
                pass  # a cap can cut a multi-byte character, or the label lies: fall back to base64
        return cls(encoding="base64", data=base64.b64encode(kept).decode("ascii"),
                   content_type=content_type, size=size, truncated=truncated)

    def to_bytes(self) -> bytes:
        if self.encoding == "text":
            return self.data.encode("utf-8")
        return base64.b64decode(self.data)


class Response(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """What the server answered when the session was recorded."""

    status: Annotated[int, Meta(ge=100, le=599)]
    reason: str = ""
    headers: list[Header] = field(default_factory=list)
    duration_ms: Annotated[float, Meta(ge=0, description="From the request fully sent to the response complete.")]
    body: Body | None = None


class Request(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """One request of a session, in the order the client sent it."""

    offset_ms: Annotated[float, Meta(ge=0, description="Start of the request, from the session start.")]
    duration_ms: Annotated[float, Meta(ge=0, description="From the request start to the response complete.")]
    method: Annotated[str, Meta(pattern=METHOD_PATTERN)]
    scheme: Scheme
    host: Annotated[str, Meta(min_length=1)]
    port: Annotated[int, Meta(ge=1, le=65535)]
    path: Annotated[str, Meta(pattern=r"^(/|\*)", description="Path with query string, as sent.")]
    http_version: str = "HTTP/1.1"
    headers: Annotated[list[Header], Meta(description="Ordered (name, value) pairs; duplicates kept.")] = field(
        default_factory=list)
    body: Body | None = None
    response: Response | None = None


class ClientInfo(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    address: str | None = None
    user_agent: str | None = None


class Session(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """A recorded user session: what one client sent, in order, with its timing."""

    format_version: Literal[1] = FORMAT_VERSION
    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]+$")]
    name: str
    weight: Annotated[float, Meta(gt=0, description="Relative chance of being picked for a replay iteration.")] = 1.0
    client: ClientInfo = field(default_factory=ClientInfo)
    started_at: datetime
    requests: list[Request]

    def __post_init__(self) -> None:
        # Written by hand, a start time may lack its zone; taken as UTC, it can be compared with the others
        # (the timeline orders sessions by their starts).
        if self.started_at.tzinfo is None:
            msgspec.structs.force_setattr(self, "started_at", self.started_at.replace(tzinfo=UTC))

    @property
    def duration_ms(self) -> float:
        return max((r.offset_ms + r.duration_ms for r in self.requests), default=0.0)

    @property
    def hosts(self) -> list[str]:
        return sorted({f"{r.host}:{r.port}" for r in self.requests})


_Struct = TypeVar("_Struct", bound=Struct)


def replace(struct: _Struct, **changes: Any) -> _Struct:
    """A copy of ``struct`` with ``changes`` (the structs are frozen)."""
    return msgspec.structs.replace(struct, **changes)


def session_schema() -> dict[str, Any]:
    """The JSON Schema of a session file: the session object at the top, the others in ``$defs``."""
    schema: dict[str, Any] = msgspec.json.schema(Session)
    definitions = schema["$defs"]
    root = definitions.pop("Session")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": definitions}


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Session)


def dump_session(session: Session) -> bytes:
    """Compact JSON with one request per line: a third of the pretty-printed size, and still one
    line of ``git diff`` or ``grep`` per request (``jq . FILE`` pretty-prints it)."""
    head = _ENCODER.encode(replace(session, requests=[]))
    assert head.endswith(b'"requests":[]}')  # requests is the last field: the lines go after it
    encode = _ENCODER.encode
    lines = b",\n".join([encode(r) for r in session.requests])
    return head[:-3] + (b"[\n" + lines + b"\n]}\n" if session.requests else b"[]}\n")


def write_session(session: Session, directory: Path) -> Path:
    """Write ``session`` as ``<id>.json`` in ``directory``, atomically.

    What is written is decoded again first: structs built in code are not validated (a HAR
    or flow file can hold anything), and a file that would not load must not be written. What
    only a replay cannot send (``Shared``'s checks) is written all the same: what was recorded
    is kept, and refused by name when it is loaded.
    """
    data = dump_session(session)
    try:
        _DECODER.decode(data)
    except msgspec.ValidationError as e:
        raise RecordingError(f"{directory}: session {session.id!r} not written: {describe_error(e)}") from e
    target = directory / f"{session.id}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{session.id}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def describe_error(err: msgspec.MsgspecError) -> str:
    """msgspec's message in our words: ``field 'requests.0.method': ...`` or ``not valid JSON: ...``."""
    message = str(err)
    if not isinstance(err, msgspec.ValidationError):
        return f"not valid JSON: {message}"
    what, sep, where = message.rpartition(" - at `$")
    if not sep:
        what, where = message, ""
    path = where.rstrip("`").replace("][", ".").replace("[", ".").replace("]", "").lstrip(".")
    # A field that is missing or unknown is named in the path, as any other bad field is.
    if named := _NAMED_FIELD.fullmatch(what):
        path = f"{path}.{named['field']}" if path else named["field"]
        what = "missing" if named["kind"] == "missing required" else "not a field of a session file"
    return f"field '{path}': {what}" if path else what


_NAMED_FIELD = re.compile(r"Object (?P<kind>missing required|contains unknown) field `(?P<field>[^`]*)`")


_REQUEST = msgspec.json.Decoder(Request)


def _by_line(raw: bytes, shared: Shared) -> Session | None:
    """A file in the layout ``dump_session`` writes, decoded one request line at a time, or None.

    A million-request session then never exists twice, as decoded objects and as shared ones,
    and each line is decoded where it lies in the file (a view: an enormous body is held as
    bytes and as text, not copied a third time). Together the pieces are the whole file, so
    the result is the whole-file decoding's; anything else (another layout, an error) gets
    the whole-file decoding and its error message.
    """
    first, end = raw.find(b"\n"), len(raw) - len(LINES_TAIL)
    if not raw.endswith(LINES_TAIL) or not raw[:first].endswith(LINES_HEAD_END) or first + 1 > end:
        return None
    view, at = memoryview(raw), first + 1
    requests: list[Request] = []
    try:
        head = _DECODER.decode(raw[:first] + b"]}")
        while (newline := raw.find(b"\n", at, end)) != -1:
            if raw[newline - 1] != ord(","):
                return None
            requests.append(shared.request(_REQUEST.decode(view[at:newline - 1]), len(requests)))
            at = newline + 1
        requests.append(shared.request(_REQUEST.decode(view[at:end]), len(requests)))
    except msgspec.MsgspecError:
        return None
    msgspec.structs.force_setattr(head, "requests", requests)
    return head


LINES_HEAD_END = b'"requests":['
"""How the first line of the layout ``dump_session`` writes ends: one request per line follows."""
LINES_TAIL = b"\n]}\n"
"""How a file in that layout ends, after its last request line."""


def read_session_bytes(path: Path) -> bytes:
    """A session file's bytes, not yet checked; ``SessionFileError`` if it cannot be read."""
    try:
        return read_regular(path, "a session file")
    except OSError as e:
        raise SessionFileError(path, e.strerror or str(e)) from e


class _Version(Struct):
    format_version: Any = FORMAT_VERSION


def _wrong_version(raw: bytes) -> str | None:
    """Once a file failed: what to say if it is of another format version (a newer traffic-replay's), not
    the first field it differs in."""
    try:
        version = msgspec.json.decode(raw, type=_Version).format_version
    except msgspec.MsgspecError:
        return None
    return None if version == FORMAT_VERSION else (f"field 'format_version': {one_line(repr(version))[:40]} is not"
                                                   f" a format this traffic-replay reads (it reads {FORMAT_VERSION})")


def decode_session(raw: bytes, shared: Shared) -> Session:
    """A session file's bytes, validated and holding what repeats once (``shared``); a ``msgspec.MsgspecError``
    if they are not a valid session, a ``ValueError`` naming the field if ``Shared`` refuses it."""
    if (session := _by_line(raw, shared)) is not None:
        return session
    session = _DECODER.decode(raw)
    for n, request in enumerate(session.requests):
        shared.request(request, n)
    return session


def read_session(path: Path, shared: Shared | None = None) -> tuple[Session, bytes]:
    """Read and validate one session file: the session and the file's bytes; ``SessionFileError`` naming the
    field at fault."""
    raw = read_session_bytes(path)
    return checked_session(path, raw, shared or Shared()), raw


def checked_session(path: Path, raw: bytes, shared: Shared) -> Session:
    """The bytes read from ``path`` as a session (``decode_session``), or ``SessionFileError`` naming the field."""
    try:
        return decode_session(raw, shared)
    except msgspec.MsgspecError as e:
        raise SessionFileError(path, _wrong_version(raw) or describe_error(e)) from e
    except ValueError as e:  # what Shared refuses
        raise SessionFileError(path, str(e)) from e


def load_session(path: Path, shared: Shared | None = None) -> Session:
    """Read and validate one session file; raise ``SessionFileError`` naming the field at fault."""
    return read_session(path, shared)[0]


def session_files(directory: Path) -> list[Path]:
    """The session files of a recordings directory (hidden and temp files are not sessions)."""
    if not directory.exists():
        raise RecordingError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise RecordingError(f"{directory}: not a directory")
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


@dataclass(frozen=True, slots=True)
class Recordings:
    """The sessions of a recordings directory, and the files skipped as bad (``--skip-bad``)."""

    sessions: list[Session]
    skipped: list[SessionFileError] = dataclass_field(default_factory=list)


def file_digest(raw: bytes) -> str:
    """What a session file's bytes are known by (``correlation.cache``): SHA-256, ~1.5 GB/s here."""
    return hashlib.sha256(raw).hexdigest()


def read_recordings(directory: Path, skip_bad: bool = False) -> Recordings:
    """Every session of ``directory``: strict by default (all bad files reported together), as a load test
    must not silently run on part of its recording; with ``skip_bad`` the good ones, and the bad ones beside
    them for the caller to name and count. A directory with no good file is an error either way."""
    files = session_files(directory)
    if not files:
        raise RecordingError(f"{directory}: no session files (*.json) in this directory")
    sessions: list[Session] = []
    problems: list[SessionFileError] = []
    shared = Shared()
    with uncollected():
        for path in files:
            try:
                sessions.append(load_session(path, shared))
            except SessionFileError as e:
                problems.append(e)
    refuse_unusable(directory, problems, [len(s.requests) for s in sessions], skip_bad)
    return Recordings(sessions, problems)


def refuse_unusable(directory: Path, problems: list[SessionFileError], requests: list[int], skip_bad: bool) -> None:
    """What ``read_recordings`` refuses, for whatever read a directory: bad files (unless ``skip_bad``), no good
    one, or none with a request; ``requests``: how many each good session has."""
    if problems and not skip_bad:
        raise RecordingsInvalid(problems)
    if not requests:
        raise RecordingError(f"{directory}: every session file is bad ({len(problems)}), e.g. {problems[0]}")
    if not any(requests):
        raise RecordingError(f"{directory}: every session file is empty (no requests)")


def load_recordings(directory: Path) -> list[Session]:
    """Every session of ``directory``; all invalid files are reported together (``RecordingsInvalid``)."""
    return read_recordings(directory).sessions


@contextmanager
def uncollected(freeze: bool = True) -> Iterator[None]:
    """No cyclic garbage collection while a mass of objects that live on is made, then (``freeze``)
    those objects moved out of the collector's sight.

    Decoding or preparing a recording allocates millions of objects and frees none: each
    collection meanwhile would walk them all again (half the time of decoding a large
    payload), and once made they live as long as the process (less work, shorter pauses in
    a replay's loop when they are frozen). Not across a replay's run: what its users leave
    behind must stay collectable.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if collecting:
            gc.enable()
