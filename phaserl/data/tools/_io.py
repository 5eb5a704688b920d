"""What the data tools share: loading their input, resumable JSONL journals, the rollout engine, progress.

Every tool writes canonical rows (`adapters.generic.example_to_row`), so its output loads back with the
generic adapter whatever format came in, with image paths made relative to the output file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from phaserl.data.adapters.generic import example_to_row
from phaserl.data.schema import Example
from phaserl.data.sources import DatasetSpec, load_examples


def load_input(
    path: str,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    *,
    image_path_map: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    check_images: bool = True,
    log: Callable[[str], None] = print,
) -> list[Example]:
    spec = DatasetSpec(
        path=str(path),
        adapter=adapter,
        fields=fields or {},
        image_root=image_root,
        image_path_map=image_path_map or {},
    )
    return load_examples(spec, skip_bad_rows=skip_bad_rows, check_images=check_images, log=log)


def read_journal(path: str | Path) -> dict[str, dict]:
    """Rows of a JSONL journal by id. A torn last line (the process was killed mid-write) is cut off the
    file so that appending continues cleanly; anything else malformed is an error."""
    path = Path(path)
    if not path.exists():
        return {}
    rows: dict[str, dict] = {}
    with open(path, "rb") as f:
        lines = f.readlines()
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(
                    f"{path}:{i + 1}: malformed JSON in a journal; delete it to start over"
                ) from None
            with open(path, "r+b") as f:
                f.truncate(sum(len(x) for x in lines[:-1]))
            return rows
        rows[str(row["id"])] = row
    if lines and not lines[-1].endswith(b"\n"):  # a complete last row that lost its newline
        with open(path, "ab") as f:
            f.write(b"\n")
    return rows


def append_rows(path: str | Path, rows: Iterable[dict]) -> None:
    """Append and flush, so a kill loses at most the batch being written."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_rows(path: str | Path, rows: Iterable[dict]) -> int:
    """Write a whole JSONL file atomically (a temporary file, then rename). Returns the row count."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def output_row(example: Example, output: str | Path) -> dict:
    """The canonical row of an example for an output file; in-memory images go to `<stem>_images/`."""
    out = Path(output)
    return example_to_row(example, out.parent, out.parent / f"{out.stem}_images")


def make_engine(
    model: str,
    *,
    batch_size: int = 8,
    dtype: str = "float32",
    autocast_bf16: bool = True,
    trust_remote_code: bool = False,
):
    """Load a model by name (folder, hub id, builtin:/tiny: names) and wrap it in a local rollout engine, on
    the GPU when torch sees one (the engine generates on its model's device; auto: the CPU engine on the CPU)."""
    from phaserl.models import load_model
    from phaserl.rollout.choice import default_device, local_engine, resolve_engine
    from phaserl.runtime import prepare_cpu_engine

    device = default_device()
    if resolve_engine("auto", device) == "cpu":
        prepare_cpu_engine()  # before the model's tensors: allocator settings (phaserl/runtime.py)
    loaded = load_model(model, dtype=dtype, trust_remote_code=trust_remote_code)
    loaded.model.to(device)
    return local_engine(
        "auto",
        loaded.model,
        loaded.processor,
        loaded.tokenizer,
        is_vlm=loaded.is_vlm,
        batch_size=batch_size,
        autocast_bf16=autocast_bf16,
    )


def progress(total: int, desc: str, initial: int = 0):
    """A tqdm bar on a terminal; silent in logs and tests (disable=None hides it off a tty)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="item", disable=None)


def batched(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def parse_range(text: str | tuple[float, float]) -> tuple[float, float]:
    """ "0.1-0.9" or "0.1,0.9" (CLI) or a pair -> (low, high), checked to lie in [0, 1]."""
    if isinstance(text, str):
        sep = "," if "," in text else "-"
        parts = text.split(sep)
        if len(parts) != 2:
            raise ValueError(f"expected a range like 0.1-0.9, got {text!r}")
        low, high = float(parts[0]), float(parts[1])
    else:
        low, high = float(text[0]), float(text[1])
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"keep range must satisfy 0 <= low <= high <= 1, got ({low}, {high})")
    return low, high
