"""Per-user data (``--data FILE.csv``): each virtual user gets its own row.

A mapping (``--data-map COLUMN=RECORDED``) says which recorded value a column replaces:
``--data-map username=lin`` sends each user's ``username`` wherever the recording sent
``lin``; the recorded value may be a redaction placeholder (``password=«redacted:…»``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from traffic_replay.errors import ConfigError
from traffic_replay.specs import DataColumn


def columns_by_recorded(columns: Sequence[DataColumn]) -> dict[str, str]:
    """``--data-map`` as {recorded value: column}, what the preparation looks values up by."""
    return {c.recorded: c.column for c in columns}


def load_rows(path: Path, columns: set[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line; every mapped column must exist."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    except (csv.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable CSV file: {e}") from e
    missing = sorted(columns - set(header))
    if missing:
        has = ", ".join(header) or "nothing"
        raise ConfigError(f"{path}: no column {', '.join(missing)} (the header line has {has})")
    if not rows:
        raise ConfigError(f"{path}: no data rows after the header line")
    return rows
