"""File reading shared by the benchmark loaders: every error names the file, the line and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for each non-blank line; a bad line raises DataError naming path:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", path=str(path), line=lineno) from e
            if not isinstance(row, dict):
                raise DataError("each line must be a JSON object", path=str(path), line=lineno)
            yield lineno, row


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from e


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a .jsonl file, or of a .json file holding a list or a {key: row} dict (row index as line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        yield from read_jsonl(path)
        return
    data = read_json(path)
    rows = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError("expected a JSON list or object of rows", path=str(path))
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError("each row must be a JSON object", path=str(path), line=i)
        yield i, row


def need(row: dict[str, Any], key: str, path: Path, line: int) -> Any:
    """row[key], or a DataError that names the file, line and missing field."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError("missing or empty", path=str(path), line=line, field=key)
    return value


def answer_text(value: Any) -> str:
    """Gold answers arrive as str, int or float (AMC23 stores 27.0): render integral floats without '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def limit_rows(rows: list, limit: int | None) -> list:
    return rows if limit is None else rows[: max(limit, 0)]
