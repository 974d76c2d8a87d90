"""The one exception tree of traffic-replay, each class with the exit code it ends a process with.

    ReplayError                 2  anything we report to the user as ``error: <line>`` lines
    ├── RecordingError          2  a session file or directory is unusable
    │   ├── SessionFileError    2  one file failed to parse or validate
    │   ├── RecordingsInvalid   2  some files of a directory did: one line each
    │   ├── JournalError        2  the crash journal cannot be written or read
    │   ├── RecordingStopped    1  the live recorder stopped rather than record unsafely
    │   ├── RedactionKeyError   2  a redaction key or recording id cannot be used
    │   ├── FlowFileError       2  a flow file cannot be read
    │   ├── HarError            2  a file is not a HAR we can read
    │   │   ├── HarSyntaxError  2  not valid JSON (the parsing child's first line)
    │   │   ├── HarParserFailed 2  the parsing child died or failed otherwise
    │   │   └── InvalidEntry    2  one entry is not valid (the import skips and counts it)
    │   ├── DamagedInput        2  the input ended early; what came before it was imported
    │   └── NothingImported     2  not one request of the input could be kept
    ├── ConfigError             2  a setting or flag has a bad value
    │   └── PayloadError        2  the master's payload did not arrive whole
    ├── TargetError             3  the target cannot be reached or answers badly
    ├── WorkerStopped           2  a worker stops: it cannot work for its master
    │   ├── VersionMismatch     2  the master and the worker run different versions
    │   └── MasterLost          2  the master went silent, or was restarted and does not know it
    └── InternalError           1  a bug, caught by the CLI: one line unless --debug

Exit codes that no exception carries: ``OK`` (0), ``FAILED_REQUESTS`` (1: Locust's own
when a request failed), ``THRESHOLD_BROKE`` (4: a ``--fail-on`` threshold broke),
``INTERRUPTED`` (130: Ctrl-C).

Every entry point (the CLI, ``replay import``, ``replay recover``, the dry run, the
locustfile, the recorder addon) turns a ``ReplayError`` into its lines with ``report_error``
(and a bad file that ``--skip-bad`` leaves out into a ``skipped:`` line with ``report_skipped``);
anything else is a bug and keeps its traceback (the CLI shows it as ``InternalError``).
Inside mitmproxy an error in ``configure`` is mitmproxy's ``OptionsError`` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn, TextIO

OK = 0
FAILED_REQUESTS = 1
THRESHOLD_BROKE = 4
INTERRUPTED = 130


class ReplayError(Exception):
    """Base of every error that is shown to the user as ``error: <line>``, one line each."""

    exit_code: int = 2

    def lines(self) -> list[str]:
        """What ``report_error`` prints, one ``error:`` line each (one, unless a subclass holds several problems)."""
        return [str(self)]


class RecordingError(ReplayError):
    """A recordings directory or file cannot be used."""


class SessionFileError(RecordingError):
    """One session file is not valid; ``path`` names it, ``detail`` says what is wrong."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class RecordingsInvalid(RecordingError):
    """Some session files of a directory are invalid; each is one line of the message."""

    def __init__(self, problems: list[SessionFileError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class JournalError(RecordingError):
    """The journal cannot be written or read: the recording is not safe."""


class RecordingStopped(RecordingError):
    """The live recorder stopped (its journal, or what it recovers, cannot be kept safe); what it had is kept."""

    exit_code = 1


class RedactionKeyError(RecordingError):
    """A key or recording id that cannot be read, created or used: one line, naming the file."""


class FlowFileError(RecordingError):
    """A flow file that cannot be read (missing, not a flow file)."""


class HarError(RecordingError):
    """A file that is not a HAR we can read."""


class HarSyntaxError(HarError):
    """The file is not valid JSON: the first line of the parsing child's error (``HarError`` adds the path)."""


class HarParserFailed(HarError):
    """The parsing child died, or failed with something other than a parse error."""


class InvalidEntry(HarError):
    """What is wrong with one HAR entry (it becomes an ``Invalid``: skipped and counted, never raised further)."""


class DamagedInput(RecordingError):
    """The input ended early; what came before it was imported."""


class NothingImported(RecordingError):
    """Not one request of the input could be kept: nothing was written."""


class ConfigError(ReplayError):
    """A setting has a value we cannot use."""


class PayloadError(ConfigError):
    """A payload that did not arrive whole, or that this version cannot read."""


class TargetError(ReplayError):
    """The target of a replay is unreachable or unhealthy."""

    exit_code = 3


class WorkerStopped(ReplayError):
    """A worker stops rather than replay for a master it cannot work with (its master says so too)."""


class VersionMismatch(WorkerStopped):
    """The worker and its master run different versions of traffic-replay: the payload could mean other things."""


class MasterLost(WorkerStopped):
    """The master stopped answering, or a new one on its port does not know this worker."""


class InternalError(ReplayError):
    """Anything that is not a ``ReplayError`` reaching the CLI: a bug, shown as one line unless ``--debug``."""

    exit_code = 1

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"internal error: {error!r} (run with --debug for the traceback)")


def one_line(text: str) -> str:
    """``text`` as one printable line: what ``splitlines`` would split at, and lone surrogates, escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_LINE_BREAKS)


_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)}


def report_error(error: ReplayError, file: TextIO | None = None) -> int:
    """``error: <line>`` on stderr for each of the error's lines; the exit code its class carries."""
    out = file or sys.stderr
    for line in error.lines():
        print(f"error: {one_line(line)}", file=out, flush=True)
    return error.exit_code


def report_skipped(errors: Iterable[ReplayError], file: TextIO | None = None) -> None:
    """``skipped: <line>`` on stderr for each input left out on purpose (``--skip-bad``), as ``report_error`` would
    word it: the run goes on without them."""
    out = file or sys.stderr
    for error in errors:
        for line in error.lines():
            print(f"skipped: {one_line(line)}", file=out, flush=True)


def exit_with(error: ReplayError) -> NoReturn:
    """``report_error`` the error, then end the process with its exit code."""
    sys.exit(report_error(error))
