"""A step: one recorded request compiled for the replay loop, and how a session's steps are built.

The hot loop takes the next ``Step``; if it has a ``Patch`` it fills the few places that
carry live values, sends, and runs the step's extractors. No pydantic, no parsing, no
string searching per request. A session's steps are built a run at a time (``Steps``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar, overload

import orjson

from traffic_replay.correlation import (
    ENCODERS,
    Extractor,
    Source,
    Template,
    Use,
    build_template,
    compile_extractor,
)
from traffic_replay.correlation.bystep import ByStep
from traffic_replay.correlation.template import Leaf, Needle, Span, json_template
from traffic_replay.format import Request, Session
from traffic_replay.hosts import HostMap, unreplayable
from traffic_replay.naming import StatsNamer, endpoint_template
from traffic_replay.piecewise import Requests

# Headers the client library or the user's own state must own, not the recording:
# hop-by-hop ones, lengths that the body sets, and the Cookie header (each user has its jar).
_DROPPED_HEADERS = frozenset({
    "host", "content-length", "cookie", "connection", "keep-alive", "proxy-connection",
    "proxy-authorization", "transfer-encoding", "te", "upgrade",
})
class Patch:
    """The places of one step that carry live values."""

    __slots__ = ("url_prefix", "path", "headers", "body", "variables")

    def __init__(self, url_prefix: str, path: Template | None, headers: tuple[tuple[str, Template], ...],
                 body: Template | None, variables: tuple[int, ...]) -> None:
        self.url_prefix = url_prefix
        self.path = path
        self.headers = headers
        self.body = body
        self.variables = variables


class Expected:
    """What the recording answered at a step, for the divergence report."""

    __slots__ = ("status", "location", "content_type", "json_keys")

    def __init__(self, status: int, location: str | None, content_type: str, json_keys: frozenset[str] | None) -> None:
        self.status = status
        self.location = location
        self.content_type = content_type
        self.json_keys = json_keys


class Step:
    """One request, ready to send."""

    __slots__ = ("index", "method", "url", "name", "headers", "body", "think", "expected", "session", "patch",
                 "extract", "skip", "recorded", "at", "overlaps")

    def __init__(self, index: int, method: str, url: str, name: str, headers: Headers, body: bytes | None,
                 think: float, expected: int, session: str) -> None:
        self.index = index  # 1-based, as users count steps
        self.method = method
        self.url = url  # a path under --host, or an absolute URL for a mapped host
        self.name = name
        self.headers = headers
        self.body = body
        self.think = think  # seconds to wait before sending, already divided by --speed
        self.expected = expected  # recorded status class (2 for 2xx), 0 when no response was recorded
        self.session = session  # the session's name, shared by its steps
        self.patch: Patch | None = None
        self.extract: tuple[tuple[int, Extractor], ...] = ()
        self.skip: str | None = None  # why this step is never sent
        self.recorded: Expected | None = None
        self.at = 0.0  # recorded start from the session start, in seconds divided by --speed
        self.overlaps = False  # started before the previous request had its answer (an asset, a prefetch)

    @property
    def label(self) -> str:
        """``session NAME step N``, for failure messages: made when one is, not held per step."""
        return f"session {self.session!r} step {self.index}"


_T = TypeVar("_T", bound=tuple[object, ...])


class _Once:
    """One object per equal tuple among a session's steps (their headers, a patch's header templates
    and variables): most steps of a session send the same ones, and a step lives as long as the run."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[tuple[object, ...], tuple[object, ...]] = {}

    def __call__(self, value: _T) -> _T:
        return self._seen.setdefault(value, value)  # type: ignore[return-value]  # equal, so of the same type


Headers = tuple[tuple[str, str], ...]
"""A step's headers: the loader's own pairs (one object per pair that repeats across the recording).
A dict per step would hold several times their size; the sender makes one per request anyway."""
_ACCEPT_ENCODING = ("Accept-Encoding", "gzip, deflate, br")  # what Locust's own client would send


def wire(text: str) -> str:
    """A header value as the client library must be given it to send the UTF-8 bytes it was
    recorded from: it writes a request's head in Latin-1, one byte per character, so "é" would
    leave as one byte and "☃" not at all. (A path needs nothing: the library percent-escapes
    what is not ASCII in it, as UTF-8.)"""
    return text if text.isascii() else text.encode().decode("latin-1")


def _on_the_wire(headers: Headers, once: _Once) -> Headers:
    if all(value.isascii() for _, value in headers):
        return headers
    return once(tuple((name, wire(value)) for name, value in headers))


def _headers(pairs: list[tuple[str, str]], once: _Once) -> Headers:
    kept = [pair for pair in pairs if pair[0].lower() not in _DROPPED_HEADERS and not pair[0].startswith(":")]
    names = {name for name, _ in kept}
    if len(names) < len(kept):
        # A dict cannot repeat a name; joining with ", " is what HTTP says repeated fields mean.
        merged: dict[str, str] = {}
        for name, value in kept:
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        kept = list(merged.items())
    if not any(name.lower() == "accept-encoding" for name in names):
        kept.append(_ACCEPT_ENCODING)
    return once(tuple(kept))


_EXPECTED: dict[tuple[int, str | None, str, frozenset[str] | None], Expected] = {}
"""Expectations by what they hold: a recording's answers repeat a few shapes (status, type, keys)."""


def _expected(request: Request) -> Expected | None:
    response = request.response
    if response is None:
        return None
    headers = {n.lower(): v for n, v in response.headers}
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    keys: frozenset[str] | None = None
    body = response.body
    if "json" in ctype and body is not None and body.encoding == "text" and not body.truncated:
        try:
            document = orjson.loads(body.data)
        except orjson.JSONDecodeError:
            document = None
        keys = frozenset(document) if isinstance(document, dict) else None
    location = headers.get("location")
    shape = (response.status, endpoint_template(location) if location else None, ctype, keys)
    found = _EXPECTED.get(shape)
    if found is None:
        found = _EXPECTED[shape] = Expected(*shape)
    return found


def _patch(step: Step, request: Request, uses: list[tuple[int, Use, str]], base: str, once: _Once) -> Patch:
    def holes(place: str, name: str = "") -> tuple[list[Needle], list[Span], list[Leaf]]:
        needles: list[Needle] = []
        spans: list[Span] = []
        leaves: list[Leaf] = []
        for var, use, value in uses:
            if use.place != place or use.name.lower() != name.lower():
                continue
            # Headers are merged (repeated names joined), so a recorded span would not hold there.
            if use.json_path is not None and place == "body":
                leaves.append((var, use.json_path, use.span))
            elif use.span is not None and use.recorded is None and place != "header":
                spans.append((*use.span, var, ENCODERS[use.encoding]))
            else:
                needles.append((var, use.encoding, ENCODERS[use.encoding](use.recorded or value)))
        return needles, spans, leaves
    needles, spans, _ = holes("path")
    path = build_template(request.path, needles, spans)
    named = {use.name.lower() for _, use, _ in uses if use.place == "header"}
    headers = tuple((name, t) for name, value in step.headers
                    if name.lower() in named and (t := build_template(value, holes("header", name)[0])) is not None)
    body = None
    if request.body is not None and request.body.encoding == "text":
        needles, spans, leaves = holes("body")
        body = (json_template(request.body.data, leaves, needles) if leaves
                else build_template(request.body.data, needles, spans))
    variables = tuple(sorted({var for var, _, _ in uses}))
    return Patch(base, path, once(headers), body, once(variables))


STEPS_PER_RUN = 100
"""Steps built at a time: a long session's first run is built before its first request, the others
as the replay reaches them or when the process is idle. A run holds the event loop meanwhile,
~3.5 ms for 100 (median; 34 µs a step, ``benchmarks/first_request.py``'s recording): under the
timing error a replay aims at, where 500 (17 ms) was not."""
WINDOWED_FROM = 20_000
"""A session of at least this many steps, decoded as its requests are taken (``traffic_replay.piecewise``),
keeps only its most recently used runs of steps (``WINDOW`` of them) and builds the others again when a
user reaches them: a million built steps hold ~1 GB, where a recorded request is ~330 bytes of bodies.
The price: users of one session more than ``WINDOW`` runs apart build each run again (34 µs a step)."""
WINDOW = 100
"""Runs a windowed session keeps: 10,000 steps, ~10-14 MB."""


class Steps(Sequence[Step]):
    """A session's steps, built a run at a time: a session of a million requests is ready to send
    its first one once its analysis is (``replayer.loading`` builds the rest in the background),
    instead of a minute later. What builds them, the decoded session with it, goes with the last.
    ``windowed`` (by default from ``WINDOWED_FROM`` steps decoded a piece at a time): only the ``WINDOW``
    runs last used are kept, and the builder with them (it holds no decoded session then)."""

    __slots__ = ("_built", "_count", "_builder", "_runs", "_ends")

    def __init__(self, count: int, builder: StepBuilder, windowed: bool | None = None) -> None:
        if windowed is None:
            windowed = count >= WINDOWED_FROM and isinstance(builder.requests, Requests)
        self._built: list[Step] = []
        self._count = count
        self._builder: StepBuilder | None = builder
        self._runs: OrderedDict[int, list[Step]] | None = OrderedDict() if windowed else None
        self._ends: list[float | None] = []  # (windowed: the builder's state at the start of each run built once)
        if windowed:
            self._run(0)
        else:
            self.build_next()

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Step: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Step]: ...
    def __getitem__(self, index: int | slice) -> Step | Sequence[Step]:
        built, runs = self._built, self._runs
        if isinstance(index, slice):
            if runs is not None:
                return [self[i] for i in range(*index.indices(self._count))]
            self.build(max(index.indices(self._count)[:2]) + 1)  # (a step of -1 starts at the larger)
            return built[index]
        if runs is not None or index >= len(built) or index < 0:
            if index < 0:
                index += self._count
            if not 0 <= index < self._count:
                raise IndexError("step index out of range")
            if runs is not None:
                run, at = divmod(index, STEPS_PER_RUN)
                found = runs.get(run)
                if found is None:
                    return self._run(run)[at]
                if run != next(reversed(runs)):
                    runs.move_to_end(run)
                return found[at]
            self.build(index + 1)
        return built[index]

    @property
    def complete(self) -> bool:
        """Nothing is left to build ahead (a windowed session's runs are built as they are reached)."""
        return self._builder is None or self._runs is not None

    def build(self, count: int | None = None) -> None:
        """Build at least the first ``count`` steps (all of them by default); a windowed session's as they are
        taken."""
        while len(self._built) < (self._count if count is None else count) and self.build_next():
            pass

    def build_next(self) -> bool:
        """Build the next run of steps; whether any are left to build."""
        builder = self._builder
        if builder is None or self._runs is not None:
            return False
        start = len(self._built)
        self._built.extend(builder(start, min(start + STEPS_PER_RUN, self._count)))
        if len(self._built) >= self._count:
            self._builder = None
        return self._builder is not None

    def _run(self, run: int) -> list[Step]:
        """Run ``run`` of a windowed session, built (again): the runs before it are built once first, in order,
        since each starts from where the one before it ended (its gaps)."""
        builder, ends = self._builder, self._ends
        assert builder is not None
        if run < len(ends):  # built before and let go
            frontier, builder.previous_end = builder.previous_end, ends[run]
            built = self._made(builder, run)
            builder.previous_end = frontier
            return built
        while len(ends) <= run:
            ends.append(builder.previous_end)
            built = self._made(builder, len(ends) - 1)
        return built

    def _made(self, builder: StepBuilder, run: int) -> list[Step]:
        assert self._runs is not None
        builder.once = _Once()  # (one per run: a table for the whole session would hold every step's headers)
        start = run * STEPS_PER_RUN
        built = self._runs[run] = builder(start, min(start + STEPS_PER_RUN, self._count))
        if len(self._runs) > WINDOW:
            self._runs.popitem(last=False)
        return built


class StepBuilder:
    """What building a session's steps needs, held while some are left to build."""

    __slots__ = ("requests", "name", "speed", "hosts", "namer", "variables", "uses_at", "sources_at", "once",
                 "previous_end")

    def __init__(self, session: Session, speed: float, hosts: HostMap | None, namer: StatsNamer,
                 variables: ByStep) -> None:
        self.requests = session.requests
        self.name = session.name
        self.speed = speed
        self.hosts = hosts
        self.namer = namer
        self.variables = variables
        self.uses_at: dict[int, list[tuple[int, Use, str]]] = {}  # (of the run being built)
        self.sources_at: dict[int, list[tuple[int, Source]]] = {}
        self.once = _Once()
        self.previous_end: float | None = None

    def __call__(self, start: int, stop: int) -> list[Step]:
        self.uses_at, self.sources_at = self.variables.at(start, stop)
        return [self._step(i, self.requests[i]) for i in range(start, stop)]

    def _step(self, position: int, request: Request) -> Step:
        hosts, speed, once, previous_end = self.hosts, self.speed, self.once, self.previous_end
        gap_ms = 0.0 if previous_end is None else max(request.offset_ms - previous_end, 0.0)
        overlaps = previous_end is not None and request.offset_ms < previous_end
        self.previous_end = max(previous_end or 0.0, request.offset_ms + request.duration_ms)
        base = hosts.base_for(request) if hosts is not None else ""
        prefix = "" if base is None or hosts is None or base == hosts.host else base
        if base is None:  # never sent; the recorded origin is what a dry run should show
            prefix = f"{request.scheme}://{request.host}:{request.port}"
        step = Step(index=position + 1, method=request.method, url=prefix + request.path,
                    name=self.namer(request.path), headers=_headers(request.headers, once),
                    body=request.body.to_bytes() if request.body is not None else None,
                    think=gap_ms / 1000 / speed if speed > 0 else 0.0,
                    expected=request.response.status // 100 if request.response is not None else 0,
                    session=self.name)
        not_mapped = f"host {request.host}:{request.port} not mapped" if base is None else None
        step.skip = unreplayable(request) or not_mapped
        step.recorded = _expected(request)
        step.at = request.offset_ms / 1000 / speed if speed > 0 else 0.0
        step.overlaps = overlaps
        uses = self.uses_at.get(position)
        if uses:
            step.patch = _patch(step, request, uses, prefix, once)
        # After the patch: its templates hold the recorded text, and the replay puts what they
        # render on the wire as it sends (``replayer.user``).
        step.headers = _on_the_wire(step.headers, once)
        step.extract = tuple((var, compile_extractor(source)) for var, source in self.sources_at.get(position, ()))
        return step
