"""Per-user data (``--data FILE.csv``): each virtual user gets its own row.

A mapping (``--data-map COLUMN=RECORDED``) says which recorded value a column replaces:
``--data-map username=lin`` sends each user's ``username`` wherever the recording sent
``lin``; the recorded value may be a redaction placeholder (``password=«redacted:…»``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from traffic_replay.errors import ConfigError
from traffic_replay.inputs import read_regular
from traffic_replay.specs import DataColumn


def columns_by_recorded(columns: Sequence[DataColumn]) -> dict[str, str]:
    """``--data-map`` as {recorded value: column}, what the preparation looks values up by."""
    return {c.recorded: c.column for c in columns}


def load_rows(path: Path, columns: set[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line; every mapped column must exist.

    Each row must have as many fields as the header: a short row would give a user no value to send
    for a column, and a long one values no column names. Read whole before any row is kept, so that a
    file is used entirely or refused.
    """
    try:
        text = read_regular(path).decode("utf-8-sig")  # a spreadsheet's BOM is not part of the first column
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        fields = [(reader.line_num, row) for row in reader if row]
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a readable CSV file: not UTF-8 at byte {e.start}") from e
    except csv.Error as e:
        raise ConfigError(f"{path}: not a readable CSV file: line {reader.line_num}: {e}") from e
    if twice := sorted({name for name in header if header.count(name) > 1}):
        raise ConfigError(f"{path}: column {', '.join(twice)} is twice in the header line")
    missing = sorted(columns - set(header))
    if missing:
        has = ", ".join(header) or "nothing"
        raise ConfigError(f"{path}: no column {', '.join(missing)} (the header line has {has})")
    for line, row in fields:
        if len(row) != len(header):
            raise ConfigError(f"{path}: line {line}: {len(row)} fields, the header line has {len(header)}")
    if not fields:
        raise ConfigError(f"{path}: no data rows after the header line")
    return [dict(zip(header, row, strict=True)) for _, row in fields]
