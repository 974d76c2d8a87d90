"""Sessions compiled for the replay loop: everything per-file is done once, here.

The hot loop only takes the next ``Step`` and sends it; no pydantic, no parsing,
no string building per request.
"""

from __future__ import annotations

from itertools import accumulate

from traffic_replay.format import Session
from traffic_replay.naming import endpoint_template

# Headers the client library or the user's own state must own, not the recording:
# hop-by-hop ones, lengths that the body sets, and the Cookie header (each user has its jar).
_DROPPED_HEADERS = frozenset({
    "host", "content-length", "cookie", "connection", "keep-alive", "proxy-connection",
    "proxy-authorization", "transfer-encoding", "te", "upgrade",
})


class Step:
    """One request, ready to send."""

    __slots__ = ("method", "path", "name", "headers", "body", "think", "expected", "label")

    def __init__(self, method: str, path: str, name: str, headers: dict[str, str], body: bytes | None,
                 think: float, expected: int, label: str) -> None:
        self.method = method
        self.path = path
        self.name = name
        self.headers = headers
        self.body = body
        self.think = think  # seconds to wait before sending, already divided by --speed
        self.expected = expected  # recorded status class (2 for 2xx), 0 when no response was recorded
        self.label = label  # "session NAME step N", for failure messages


class PreparedSession:
    __slots__ = ("id", "name", "weight", "steps")

    def __init__(self, id: str, name: str, weight: float, steps: tuple[Step, ...]) -> None:
        self.id = id
        self.name = name
        self.weight = weight
        self.steps = steps


def _headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in pairs:
        if name.lower() in _DROPPED_HEADERS or name.startswith(":"):
            continue
        # A dict cannot repeat a name; joining with ", " is what HTTP says repeated fields mean.
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def prepare_session(session: Session, speed: float) -> PreparedSession:
    steps: list[Step] = []
    previous_end: float | None = None
    for index, request in enumerate(session.requests, start=1):
        gap_ms = 0.0 if previous_end is None else max(request.offset_ms - previous_end, 0.0)
        think = gap_ms / 1000 / speed if speed > 0 else 0.0
        previous_end = request.offset_ms + request.duration_ms
        steps.append(Step(
            method=request.method,
            path=request.path,
            name=endpoint_template(request.path),
            headers=_headers(request.headers),
            body=request.body.to_bytes() if request.body is not None else None,
            think=think,
            expected=request.response.status // 100 if request.response is not None else 0,
            label=f"session {session.name!r} step {index}",
        ))
    return PreparedSession(session.id, session.name, session.weight, tuple(steps))


def prepare(sessions: list[Session], speed: float) -> tuple[tuple[PreparedSession, ...], tuple[float, ...]]:
    """Prepared sessions with requests, and their cumulative weights for ``random.choices``."""
    prepared = tuple(prepare_session(s, speed) for s in sessions if s.requests)
    return prepared, tuple(accumulate(s.weight for s in prepared))
