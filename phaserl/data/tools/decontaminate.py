"""Remove training items that overlap evaluation benchmarks, by text n-grams and near-duplicate images.

CLI wanted (lead wires it; print the returned dict as JSON):
    phaserl data decontaminate --input data.jsonl --against mathvision,mathvista,path/to/bench.jsonl
        --output clean.jsonl [--report report.json] [--ngram 13] [--threshold 0.5] [--image-hash-distance 4]
        [--adapter generic] [--field question=problem ...] [--image-root DIR] [--benchmarks-dir DIR]
        [--benchmark-images mathvista=DIR ...] [--skip-bad-rows]
    -> phaserl.data.tools.decontaminate.decontaminate_command(input, against, output, report=..., ngram=...,
           threshold=..., image_hash_distance=..., adapter=..., fields=..., image_root=...,
           benchmarks_dir=...,
           benchmark_images=dict(b.split("=", 1) for b in benchmark_images), skip_bad_rows=...)

Benchmarks are files (any JSONL/JSON with a question|problem|query field and optional image|images) or
names resolved in ../shared/data/benchmarks (see BENCHMARK_FILES). MathVista and MathVerse images are not
in the shared data: their items are then compared by text only, and the report says how many lacked images.
The report lists every removed item with each reason (benchmark, item id, overlap or hash distance).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phaserl.data.adapters._common import first_field, image_list
from phaserl.data.images import resolve_image_path
from phaserl.data.schema import DataError, Example
from phaserl.data.sources import iter_file_rows
from phaserl.data.tools._io import load_input, output_row, progress, write_rows
from phaserl.data.tools.overlap import HashIndex, NgramIndex, hash_image

BENCHMARK_FILES: dict[str, str] = {
    "mathvision": "mathvision/test.jsonl",
    "mathvista": "mathvista/testmini.json",
    "mathverse": "mathverse/testmini_text_only.json",
    "olympiadbench": "olympiadbench/OE_TO_maths_en_COMP.jsonl",
    "math500": "math500/test.jsonl",
    "gsm8k": "gsm8k/test.jsonl",
    "aime24": "aime24/test.jsonl",
    "aime25": "aime25/test.jsonl",
    "amc23": "amc23/test.jsonl",
    "minerva_math": "minerva_math/test.jsonl",
}


def default_benchmarks_dir() -> Path:
    """$PHASERL_BENCHMARKS_DIR, else the evaluation's data directory ($PHASERL_DATA, else
    ../shared/data/benchmarks relative to the current directory): never a path inside the installed package."""
    env = os.environ.get("PHASERL_BENCHMARKS_DIR")
    if env:
        return Path(env)
    from phaserl.eval.registry import resolve_data_dir

    return resolve_data_dir(None)[0]


@dataclass
class BenchItem:
    benchmark: str
    id: str
    text: str
    images: list[str] = field(default_factory=list)  # existing image files only
    images_missing: int = 0


def resolve_against(
    against: list[str] | str, benchmarks_dir: str | Path | None = None
) -> list[tuple[str, Path]]:
    """(label, file) for each benchmark: an existing path, or a name of BENCHMARK_FILES."""
    names = [a.strip() for a in (against.split(",") if isinstance(against, str) else against) if a.strip()]
    root = Path(benchmarks_dir) if benchmarks_dir else default_benchmarks_dir()
    out = []
    for name in names:
        if Path(name).exists():
            out.append((Path(name).stem, Path(name)))
        elif name in BENCHMARK_FILES:
            path = root / BENCHMARK_FILES[name]
            if not path.exists():
                raise FileNotFoundError(f"benchmark {name!r}: {path} not found (set --benchmarks-dir)")
            out.append((name, path))
        else:
            raise ValueError(
                f"--against {name!r} is neither a file nor a known benchmark {sorted(BENCHMARK_FILES)}"
            )
    return out


def read_benchmark(label: str, path: Path, image_dir: str | Path | None = None) -> list[BenchItem]:
    """Question text (with options) and existing image files of every item; rows without text are skipped."""
    root = Path(image_dir) if image_dir else path.parent
    items = []
    for idx, (_, row) in enumerate(iter_file_rows(path)):
        if isinstance(row, DataError):
            continue
        _, question = first_field(row, ("question", "problem", "query"))
        if not isinstance(question, str) or not question.strip():
            continue
        options = row.get("options") or row.get("choices")
        text = question + (" " + " ".join(map(str, options)) if isinstance(options, list) else "")
        _, item_id = first_field(row, ("id", "pid", "sample_index", "unique_id", "idx"))
        refs = [r for r in image_list(first_field(row, ("image", "images"))[1]) if isinstance(r, str)]
        paths = [resolve_image_path(r, root) for r in refs]
        found = [str(p) for p in paths if p.is_file()]
        items.append(
            BenchItem(
                label, str(item_id if item_id is not None else idx), text, found, len(paths) - len(found)
            )
        )
    return items


def _hash_cache_file(path: Path) -> Path:
    from phaserl.models import cache_dir

    key = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    return cache_dir() / "phash" / f"{path.stem}-{key}.json"


def hash_benchmark_images(items: list[BenchItem], source: Path) -> list[list[int | None]]:
    """pHash of each item's images, cached per benchmark file (keyed by image path, size and mtime)."""
    cache_file = _hash_cache_file(source)
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    out, dirty = [], False
    for item in items:
        hashes = []
        for p in item.images:
            st = os.stat(p)
            key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
            if key not in cache:
                try:
                    h = hash_image(p)
                except DataError:  # an unreadable benchmark image cannot be matched; its text still is
                    h = None
                cache[key], dirty = (None if h is None else format(h, "016x")), True
            hashes.append(None if cache[key] is None else int(cache[key], 16))
        out.append(hashes)
    if dirty:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return out


def build_indexes(
    benchmarks: list[tuple[str, Path]], ngram: int, image_dirs: dict[str, str] | None = None
) -> tuple[list[BenchItem], NgramIndex, HashIndex, dict]:
    """All benchmark items in one text index and one image index, plus per-benchmark counts."""
    items: list[BenchItem] = []
    text_index, image_index = NgramIndex(n=ngram), HashIndex()
    stats = {}
    for label, path in benchmarks:
        bench = read_benchmark(label, path, (image_dirs or {}).get(label))
        hashes = hash_benchmark_images(bench, path)
        for item, item_hashes in zip(bench, hashes):
            idx = text_index.add(item.text, has_image=bool(item.images or item.images_missing))
            for h in item_hashes:
                image_index.add(idx, h)
            items.append(item)
        stats[label] = {
            "file": str(path),
            "items": len(bench),
            "with_images": sum(1 for b in bench if b.images),
            "images_missing": sum(b.images_missing for b in bench),
        }
    return items, text_index, image_index, stats


def example_text(ex: Example) -> str:
    return ex.question + (" " + " ".join(ex.choices) if ex.choices else "")


def find_overlaps(
    ex: Example,
    items: list[BenchItem],
    text_index: NgramIndex,
    image_index: HashIndex,
    *,
    threshold: float,
    image_hash_distance: int,
) -> list[dict]:
    """Every reason to remove `ex`: text overlaps and near-duplicate images, naming the benchmark item."""
    reasons = []
    for hit in text_index.matches(example_text(ex), threshold, has_image=bool(ex.images)):
        item = items[hit.item]
        reasons.append(
            {
                "type": "text",
                "benchmark": item.benchmark,
                "benchmark_id": item.id,
                "overlap": round(hit.overlap, 3),
                "ngram": hit.example,
            }
        )
    for k, ref in enumerate(ex.images):
        try:
            h = hash_image(ref, where=f"example {ex.id}: ")
        except DataError as e:
            reasons.append({"type": "error", "message": str(e)})
            continue
        for hit in image_index.matches(h, image_hash_distance):
            item = items[hit.item]
            reasons.append(
                {
                    "type": "image",
                    "benchmark": item.benchmark,
                    "benchmark_id": item.id,
                    "image": k,
                    "distance": hit.distance,
                }
            )
    return reasons


def _split(examples, items, text_index, image_index, threshold, image_hash_distance):
    """(removed report rows, kept examples, image errors) over the training set, with a progress bar."""
    removed, kept, errors = [], [], []
    bar = progress(len(examples), "decontaminate")
    for ex in examples:
        reasons = find_overlaps(
            ex, items, text_index, image_index, threshold=threshold, image_hash_distance=image_hash_distance
        )
        if any(r["type"] == "error" for r in reasons):
            errors.append({"id": ex.id, "errors": [r["message"] for r in reasons if r["type"] == "error"]})
        if any(r["type"] != "error" for r in reasons):
            removed.append({"id": ex.id, "question": ex.question[:200], "reasons": reasons})
        else:
            kept.append(ex)
        bar.update(1)
    bar.close()
    return removed, kept, errors


def decontaminate_command(
    input: str,
    against: list[str] | str,
    output: str,
    report: str | None = None,
    ngram: int = 13,
    threshold: float = 0.5,
    image_hash_distance: int = 4,
    *,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    benchmarks_dir: str | None = None,
    benchmark_images: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Write the training items that overlap no benchmark to `output`, and what was removed and why to
    `report` (default `<output stem>.decontamination.json`)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    examples = load_input(input, adapter, fields, image_root, skip_bad_rows=skip_bad_rows, log=log)
    items, text_index, image_index, bench_stats = build_indexes(
        resolve_against(against, benchmarks_dir), ngram, benchmark_images
    )
    removed, kept, errors = _split(examples, items, text_index, image_index, threshold, image_hash_distance)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_rows(out, (output_row(ex, out) for ex in kept))
    by = Counter(
        f"{r['type']}:{r['benchmark']}" for item in removed for r in item["reasons"] if "benchmark" in r
    )
    result = {
        "input": str(input),
        "output": str(out),
        "total": len(examples),
        "kept": len(kept),
        "removed": len(removed),
        "removed_by": dict(by),
        "unreadable_images": len(errors),
        "benchmarks": bench_stats,
        "params": {"ngram": ngram, "threshold": threshold, "image_hash_distance": image_hash_distance},
    }
    report_path = Path(report) if report else out.with_name(out.stem + ".decontamination.json")
    report_path.write_text(
        json.dumps({**result, "removed_items": removed, "errors": errors}, indent=1, ensure_ascii=False)
    )
    result["report"] = str(report_path)
    log(f"decontaminate: removed {len(removed)} of {len(examples)} ({dict(by)}); report {report_path}")
    return result
