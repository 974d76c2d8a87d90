"""The session file format: pydantic models at the edge, orjson on disk.

One JSON file per recorded user session. Files are written atomically (temp file in
the same directory, fsync, rename) so that a reader never sees half a session.
Loading validates every file and reports each bad one with its path and the field
at fault; one bad file never hides the others.
"""

from __future__ import annotations

import base64
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from traffic_replay.errors import RecordingError, SessionFileError

FORMAT_VERSION: Literal[1] = 1

Header = tuple[str, str]

# Content types we keep as readable text; anything else that is not valid UTF-8 goes base64.
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "+json", "+xml", "/xml",
               "application/javascript", "application/graphql")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Body(_Model):
    """A message body: UTF-8 text as is, anything else base64."""

    encoding: Literal["text", "base64"]
    data: str
    content_type: str | None = None
    size: Annotated[int, Field(ge=0, description="Size in bytes of the whole body as sent.")]
    truncated: bool = Field(False, description="True when only the first bytes were kept (response size cap).")

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


class Response(_Model):
    """What the server answered when the session was recorded."""

    status: Annotated[int, Field(ge=100, le=599)]
    reason: str = ""
    headers: list[Header] = Field(default_factory=list)
    duration_ms: Annotated[float, Field(ge=0, description="From the request fully sent to the response complete.")]
    body: Body | None = None


class Request(_Model):
    """One request of a session, in the order the client sent it."""

    offset_ms: Annotated[float, Field(ge=0, description="Start of the request, from the session start.")]
    duration_ms: Annotated[float, Field(ge=0, description="From the request start to the response complete.")]
    method: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_-]*$")]
    scheme: Literal["http", "https"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    path: Annotated[str, Field(pattern=r"^(/|\*)", description="Path with query string, as sent.")]
    http_version: str = "HTTP/1.1"
    headers: list[Header] = Field(default_factory=list, description="Ordered (name, value) pairs; duplicates kept.")
    body: Body | None = None
    response: Response | None = None


class ClientInfo(_Model):
    address: str | None = None
    user_agent: str | None = None


class Session(_Model):
    """A recorded user session: what one client sent, in order, with its timing."""

    format_version: Literal[1] = FORMAT_VERSION
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    name: str
    weight: Annotated[float, Field(gt=0, description="Relative chance of being picked for a replay iteration.")] = 1.0
    client: ClientInfo = Field(default_factory=ClientInfo)
    started_at: datetime
    requests: list[Request]

    @property
    def duration_ms(self) -> float:
        return max((r.offset_ms + r.duration_ms for r in self.requests), default=0.0)

    @property
    def hosts(self) -> list[str]:
        return sorted({f"{r.host}:{r.port}" for r in self.requests})


def session_schema() -> dict[str, object]:
    """The JSON Schema of a session file."""
    return Session.model_json_schema()


def dump_session(session: Session) -> bytes:
    """Compact JSON with one request per line: a third of the pretty-printed size, and still one
    line of ``git diff`` or ``grep`` per request (``jq . FILE`` pretty-prints it)."""
    document = session.model_dump(mode="json", exclude_defaults=False)
    requests = document.pop("requests")
    head = orjson.dumps(document)[:-1]  # without its closing brace: "requests" goes last
    lines = b",\n".join(orjson.dumps(r) for r in requests)
    return head + (b',"requests":[\n' + lines + b"\n]}\n" if requests else b',"requests":[]}\n')


def write_session(session: Session, directory: Path) -> Path:
    """Write ``session`` as ``<id>.json`` in ``directory``, atomically."""
    target = directory / f"{session.id}.json"
    data = dump_session(session)
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


def _describe(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    if first["type"].startswith("json_"):
        return f"not valid JSON: {first['msg']}"
    return f"field '{where}': {first['msg']}{more}" if where else f"{first['msg']}{more}"


def load_session(path: Path) -> Session:
    """Read and validate one session file; raise ``SessionFileError`` naming the field at fault."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SessionFileError(path, e.strerror or str(e)) from e
    try:
        return Session.model_validate_json(raw)
    except ValidationError as e:
        raise SessionFileError(path, _describe(e)) from e


class RecordingsInvalid(RecordingError):
    """Some session files of a directory are invalid; each is one line of the message."""

    def __init__(self, problems: list[SessionFileError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def session_files(directory: Path) -> list[Path]:
    """The session files of a recordings directory (hidden and temp files are not sessions)."""
    if not directory.exists():
        raise RecordingError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise RecordingError(f"{directory}: not a directory")
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


def load_recordings(directory: Path) -> list[Session]:
    """Load every session of ``directory``; all invalid files are reported together."""
    files = session_files(directory)
    if not files:
        raise RecordingError(f"{directory}: no session files (*.json) in this directory")
    sessions: list[Session] = []
    problems: list[SessionFileError] = []
    for path in files:
        try:
            sessions.append(load_session(path))
        except SessionFileError as e:
            problems.append(e)
    if problems:
        raise RecordingsInvalid(problems)
    empty = [s for s in sessions if not s.requests]
    if len(empty) == len(sessions):
        raise RecordingError(f"{directory}: every session file is empty (no requests)")
    return sessions
