"""The one exception tree of traffic-replay.

    ReplayError                 anything we report to the user as one line
    ├── RecordingError          a session file or directory is unusable
    │   └── SessionFileError    one file failed to parse or validate
    ├── ConfigError             a setting or flag has a bad value
    └── TargetError             the target cannot be reached or answers badly

The CLI turns every ``ReplayError`` into ``error: <message>`` and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class ReplayError(Exception):
    """Base of every error that is shown to the user as a single line."""

    exit_code: int = 2


class RecordingError(ReplayError):
    """A recordings directory or file cannot be used."""


class SessionFileError(RecordingError):
    """One session file is not valid; ``path`` names it, ``detail`` says what is wrong."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class ConfigError(ReplayError):
    """A setting has a value we cannot use."""


class TargetError(ReplayError):
    """The target of a replay is unreachable or unhealthy."""

    exit_code = 3
