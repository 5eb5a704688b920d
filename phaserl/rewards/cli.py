"""`phaserl verify --pairs FILE.jsonl [--out FILE]`: check many (gold, pred) pairs in batch.

Each input row has `gold` and `pred` (a bare answer or a whole response; the answer is extracted as the
accuracy reward does), and optionally `answer_type`, `choices`, `tolerance`, `rel_tolerance`. Each output
row repeats the input and adds `extracted` and `equal` (true, false, or null when undecidable). The last
line printed is the summary `N pairs, E equal, U undecided, S s`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from phaserl.data.schema import ANSWER_TYPES, DataError
from phaserl.eval.loaders._io import read_jsonl
from phaserl.rewards.extract import extract_answer
from phaserl.rewards.verify import Verifier

_CHUNK = 512  # rows checked per batch: bounded memory, output streams out


def _as_text(value, path: Path, line: int, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # "gold": 7 means "7"
    raise DataError(f"must be a string, got {type(value).__name__}", path=str(path), line=line, field=name)


def _check_options(row: dict, path: Path, line: int) -> None:
    def bad(name: str, why: str) -> DataError:
        return DataError(why, path=str(path), line=line, field=name)

    if row.get("answer_type") is not None and row["answer_type"] not in ANSWER_TYPES:
        raise bad("answer_type", f"{row['answer_type']!r} not in {ANSWER_TYPES}")
    if row.get("choices") is not None and not isinstance(row["choices"], list):
        raise bad("choices", "must be a list of option texts")
    for name in ("tolerance", "rel_tolerance"):
        value = row.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise bad(name, "must be a non-negative number")


def read_pairs(path: Path) -> Iterator[dict]:
    """Rows of a pairs file, validated; DataError names the file, line and field of a bad row."""
    for line_no, row in read_jsonl(path):
        for name in ("gold", "pred"):
            if name not in row:
                raise DataError("missing", path=str(path), line=line_no, field=name)
            row[name] = _as_text(row[name], path, line_no, name)
        _check_options(row, path, line_no)
        yield row


def _request(row: dict) -> dict:
    return {
        "gold": row["gold"],
        "pred": row["extracted"] or "",
        "answer_type": row.get("answer_type"),
        "choices": row.get("choices"),
        "tolerance": row.get("tolerance"),
        "rel_tolerance": row.get("rel_tolerance"),
    }


def _chunks(rows: Iterator[dict]) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _verify_chunk(verifier: Verifier, chunk: list[dict]) -> None:
    for row in chunk:
        row["extracted"] = extract_answer(row["pred"]) if row["pred"] is not None else None
    todo = [row for row in chunk if row["gold"] is not None]
    for row, verdict in zip(todo, verifier.check_many([_request(r) for r in todo])):
        row["equal"] = verdict
    for row in chunk:
        row.setdefault("equal", None)


def verify_command(pairs: Path, out: Path | None, workers: int = 2, timeout: float = 5.0) -> int:
    """Run the check over a pairs file; rows go to `out` (or stdout), the summary is printed last.

    Returns the exit code: 0, or 2 when the input is unreadable (the error names file, line and field).
    """
    t0 = time.perf_counter()
    counts = {"n": 0, "equal": 0, "undecided": 0}
    sink = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    try:
        with Verifier(workers=workers, timeout=timeout) as verifier:
            for chunk in _chunks(read_pairs(Path(pairs))):
                _verify_chunk(verifier, chunk)
                for row in chunk:
                    counts["n"] += 1
                    counts["equal"] += row["equal"] is True
                    counts["undecided"] += row["equal"] is None
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if out is not None:
            sink.close()
        else:
            sink.flush()
    seconds = time.perf_counter() - t0
    print(f"{counts['n']} pairs, {counts['equal']} equal, {counts['undecided']} undecided, {seconds:.1f} s")
    return 0
