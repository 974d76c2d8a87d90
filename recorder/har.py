"""HAR files (browser and Playwright exports) into exchanges, grouped by page or by file.

Pure Python, no mitmproxy. A file is read entry by entry (ijson; a big one parsed in a
forked child, ``recorder.harparse``); each entry becomes an exchange or the reason it is
skipped in ``recorder.harentry``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import ijson

from recorder.filters import FlowFilter
from recorder.harentry import INVALID, Invalid, entry_captured, shown
from recorder.harparse import CHUNK, PARSE_ERRORS, Parsed, Reader, child_items, first_line
from recorder.pipeline import Pipeline
from recorder.records import Exchange
from recorder.redaction import Redactor
from traffic_replay import inputs
from traffic_replay.errors import HarError, HarParserFailed, HarSyntaxError, RecordingError, one_line

Grouping = Literal["page", "file"]
T = TypeVar("T")



VERSIONS = ("1.1", "1.2")
"""The HAR versions this reads; another one is read as 1.2, with a warning."""


def open_regular(path: Path, error: type[RecordingError]) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; else ``error``, one line saying what it is."""
    try:
        return inputs.open_regular(path)
    except OSError as e:
        # What streams (a FIFO, a device) can still be imported: from a file that holds what it gave.
        hint = " (save what it gives to a file, and import that)" if inputs.is_stream(e) else ""
        raise error(f"{path}: {e.strerror or e}{hint}") from e


@dataclass
class HarGroup:
    """The exchanges of one HAR page (or of the whole file), in file order."""

    id: str
    """Stable: derived from the file's content and the page, so importing twice rewrites the same files."""
    title: str
    exchanges: list[Exchange] = field(default_factory=list)


@dataclass
class HarImport:
    groups: list[HarGroup]
    entries: int
    skipped: list[tuple[int, str, str]]
    """(entry number, URL, reason) of every entry not imported; entries are numbered from 1, as in ``entry 1: ...``."""
    invalid: list[tuple[int, str]] = field(default_factory=list)
    """(entry number, what is wrong) of every entry that is not a valid HAR entry."""


FORK_FROM = 8 << 20
"""A HAR at least this big is parsed in a child process (``recorder.harparse``); a smaller one here, where
the fork would cost more than it saves."""


def _entry(entry: Any) -> Any:
    return entry


@dataclass
class HarFile:
    """A HAR streamed entry by entry (ijson): ``entries()`` yields each; then ``digest``, ``pages``, ``count``.

    Never the whole file as objects: one entry at a time, and the pages (small). Pages
    are read before the entries when they come first in the file (the usual order: a
    look at the file's head); when they come after, ``pages`` is filled by a second
    pass once the entries are done, and only if ``with_pages`` asks for them.
    """

    path: Path
    with_pages: bool = True
    digest: str = ""
    """sha256 of the file's bytes: with a page it makes a session id that importing again rewrites."""
    pages: dict[str, str] = field(default_factory=dict)
    """Title of each page id."""
    count: int = 0
    version: Any = None
    """``log.version`` when it comes before the entries (as every exporter writes it)."""
    fork_from: int = FORK_FROM
    """Files of this many bytes or more are parsed in a child process."""

    def entries(self, convert: Callable[[Any], Any] = _entry) -> Generator[Any, None, None]:
        """Each entry through ``convert`` (made where the entry is parsed: in the child for a big file)."""
        pages_after = not self._read(self._pages_ahead) and self.with_pages
        with self._open() as fh:
            self.digest = yield from self._stream(fh, convert)
        if self.count == 0 and not self._read(self._has_entries):
            raise HarError(f"{self.path}: not a HAR file: no log.entries list")
        if pages_after:
            self._read(lambda fh: self._add_pages(ijson.items(Reader(fh), "log.pages.item", use_float=True,
                                                              buf_size=CHUNK)))

    def _stream(self, fh: BinaryIO, convert: Callable[[Any], Any]) -> Generator[Any, None, str]:
        """The entries converted, counted; returns the file's digest."""
        try:
            if os.fstat(fh.fileno()).st_size < self.fork_from:
                reader = Reader(fh)
                for entry in ijson.items(reader, "log.entries.item", use_float=True, buf_size=CHUNK):
                    self.count += 1
                    yield convert(entry)
                return reader.digest()
            parsed = Parsed()
            with contextlib.closing(child_items(fh, "log.entries.item", parsed, convert)) as items:
                for item in items:
                    self.count += 1
                    yield item
            return parsed.digest
        except (*PARSE_ERRORS, HarSyntaxError) as e:
            raise self._invalid(e) from e
        except HarParserFailed as e:
            raise HarError(f"{self.path}: {e}") from e

    def _open(self) -> BinaryIO:
        return open_regular(self.path, HarError)

    def _read(self, parse: Callable[[BinaryIO], T]) -> T:
        with self._open() as fh:
            try:
                return parse(fh)
            except PARSE_ERRORS as e:
                raise self._invalid(e) from e

    def version_warning(self) -> str | None:
        """What to say of a ``log.version`` that is not one of ``VERSIONS``."""
        if self.version is None or str(self.version) in VERSIONS:
            return None
        return (f"HAR version {shown(self.version)} is not {' or '.join(VERSIONS)}: its entries are read as HAR "
                f"{VERSIONS[-1]}")

    def _invalid(self, error: Exception) -> HarError:
        return HarError(f"{self.path}: not a HAR file: not valid JSON ({first_line(error)})")

    def _pages_ahead(self, fh: BinaryIO) -> bool:
        """Read ``log.pages`` (and ``log.version``) if before ``log.entries``; False if the entries come first."""
        ahead = True

        def head() -> Iterator[tuple[str, str, Any]]:
            nonlocal ahead
            for prefix, event, value in ijson.parse(Reader(fh), use_float=True, buf_size=CHUNK):
                if prefix == "log.entries" and event == "start_array":
                    ahead = False
                    return
                if prefix == "log.version" and event in ("string", "number"):
                    self.version = value
                yield prefix, event, value
                if prefix == "log.pages" and event == "end_array":
                    return

        self._add_pages(ijson.items(head(), "log.pages.item"))
        return ahead

    def _add_pages(self, pages: Iterable[Any]) -> None:
        self.pages.update((str(p.get("id")), _page_title(p)) for p in pages if isinstance(p, dict))

    @staticmethod
    def _has_entries(fh: BinaryIO) -> bool:
        return any(prefix == "log.entries" and event == "start_array"
                   for prefix, event, _ in ijson.parse(Reader(fh), use_float=True, buf_size=CHUNK))


def group_id(digest: str, key: str, started: float) -> str:
    stamp = datetime.fromtimestamp(started, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-har-{hashlib.sha256(f'{digest}/{key}'.encode()).hexdigest()[:8]}"


def page_key(entry: Any, per: Grouping) -> str:
    """The group an entry belongs to: its page (``per="page"``), or ``""`` for the whole file."""
    page = entry.get("pageref") if per == "page" and isinstance(entry, dict) else None
    return str(page) if page is not None else ""


def entry_url(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    url = request.get("url", "?") if isinstance(request, dict) else "?"
    return one_line(url[:200] if isinstance(url, str) else str(url)[:200])


def load_har(path: Path, body_cap: int, per: Grouping = "page", flow_filter: FlowFilter | None = None,
             redactor: Redactor | None = None) -> HarImport:
    """The whole HAR in memory, grouped (for tests and small files: ``replay import`` streams it instead)."""
    pipeline = Pipeline()
    pipeline.body_cap, pipeline.redactor = body_cap, redactor
    if flow_filter is not None:
        pipeline.filter = flow_filter
    har = HarFile(path, with_pages=per == "page")
    found: dict[str, tuple[float, list[Exchange]]] = {}
    skipped: list[tuple[int, str, str]] = []
    invalid: list[tuple[int, str]] = []
    for index, entry in enumerate(har.entries(), 1):
        captured = entry_captured(entry)
        if isinstance(captured, Invalid):
            skipped.append((index, entry_url(entry), INVALID))
            invalid.append((index, captured.what))
            continue
        reason = captured if isinstance(captured, str) else pipeline.filter.skip_reason(
            captured.host, captured.port, captured.url, captured.path, captured.response_type)
        if reason is not None or isinstance(captured, str):
            skipped.append((index, entry_url(entry), reason or INVALID))
            continue
        found.setdefault(page_key(entry, per), (captured.started, []))[1].append(pipeline.exchange(captured))
    groups = [HarGroup(group_id(har.digest, key, started), (har.pages.get(key) if key else None) or path.stem,
                       exchanges) for key, (started, exchanges) in found.items()]
    return HarImport(groups, har.count, skipped, invalid)


def _page_title(page: dict[str, Any] | None) -> str:
    if not page:
        return ""
    return str(page.get("title") or page.get("id") or "")
