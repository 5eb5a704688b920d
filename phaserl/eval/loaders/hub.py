"""Benchmarks named on the Hugging Face hub (`--hub`), for users who can reach it (through `datasets`).

The hub copies have the same fields as the files in ../shared/data/benchmarks, so each benchmark's
`row_to_example` converts them; decoded images (`decoded_image`, `image_1` ...) come in as PIL images.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example

# Hub columns that hold an already-decoded image, in the order a question refers to them.
_IMAGE_COLUMNS = ("decoded_image", "image_1", "image_2", "image_3", "image_4", "image_5")


def hub_rows(dataset: str, split: str, config: str | None = None) -> list[dict[str, Any]]:
    """Rows of a hub dataset split as plain dicts. Imports `datasets` only here."""
    if importlib.util.find_spec("datasets") is None:
        raise RuntimeError(
            f"loading {dataset} from the hub needs the `datasets` package: "
            "pip install 'phaserl[datasets]' (or use the benchmark files with --data-dir)"
        )
    import datasets

    try:
        data = datasets.load_dataset(dataset, config, split=split)
    except (ConnectionError, FileNotFoundError) as e:  # offline, or no such dataset/split
        raise DataError(
            f"cannot load {dataset} [{split}] from the hub: {e} (use the benchmark files with --data-dir)"
        ) from None
    return [dict(row) for row in data]


def rows_to_examples(rows: list[dict[str, Any]], convert: Callable[..., Any], where: str) -> list[Example]:
    """Apply a benchmark's row converter to hub rows and attach in-memory images (path strings are dropped)."""
    out = []
    for i, row in enumerate(rows, start=1):
        converted = convert(row, Path(where), i)
        if converted is None:
            continue
        example = converted[0] if isinstance(converted, tuple) else converted
        example.images = [
            row[c] for c in _IMAGE_COLUMNS if row.get(c) is not None and not isinstance(row[c], str)
        ]
        out.append(example)
    return out
