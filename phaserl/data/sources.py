"""Where examples come from: a DatasetSpec (local file, hub id or built-in generator) -> list[Example].

The spec names an adapter (raw row -> Example); this module reads the rows, runs the adapter, resolves image
references (paths relative to image_root, file:// URLs, foreign prefixes through image_path_map, bytes,
base64 data) and checks cheaply that image files exist. Nothing is decoded here: examples keep paths, bytes or
LazyImage rows of the memory-mapped hub dataset, and the renderer decodes pixels when it needs them. Bad rows
raise a DataError naming file, line and field, or with skip_bad_rows are counted, logged one by one and
summarised.
"""

from __future__ import annotations

import base64
import binascii
import glob
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from phaserl.data.adapters import get_adapter
from phaserl.data.hub import hub_rows
from phaserl.data.images import LazyImage, map_image_path, resolve_image_path
from phaserl.data.schema import ANSWER_TYPES, DataError, DataMissing, Example

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")


class DatasetSpec(BaseModel):
    """One dataset of a stage's mixture: exactly one of path, hub or generator."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        None, description="label in logs and mixtures; default: file stem, generator or hub id"
    )
    path: str | None = Field(
        None, description="local .jsonl/.json/.parquet file, a folder of them, or a glob"
    )
    hub: str | None = Field(
        None, description="Hugging Face datasets id, loaded with `datasets` (needs the hub)"
    )
    split: str = Field("train", description="hub split to load (ignored for local files)")
    subset: str | None = Field(None, description="hub configuration name, if the dataset has several")
    adapter: str = Field("generic", description="row format: generic, deepscaler, virl39k, geometry3k, ...")
    fields: dict[str, str] = Field(
        default_factory=dict, description="generic adapter field names, e.g. {question: problem}"
    )
    image_root: str | None = Field(
        None, description="folder for relative image paths; default: the file's folder (hub rows: required)"
    )
    image_path_map: dict[str, str] = Field(
        default_factory=dict,
        description="image path prefixes to replace, {old_prefix: new_prefix}, e.g. the authors' cluster "
        "paths in VerMulti rows -> your folder (a relative new prefix is under image_root)",
    )
    generator: str | None = Field(None, description="built-in generated task (see phaserl.data.generators)")
    benchmark: str | None = Field(
        None,
        description="a registered evaluation benchmark (mathvision:testmini, math500, ...): its file under "
        "$PHASERL_DATA (or ../shared/data/benchmarks) when present, else its hub dataset",
    )
    generator_args: dict[str, Any] = Field(default_factory=dict, description="arguments of the generator")
    limit: int | None = Field(None, ge=0, description="keep at most this many examples (the first ones)")
    weight: float = Field(1.0, ge=0, description="sampling weight of this dataset in a mixture")
    answer_type: str | None = Field(
        None, description="force this answer type on every row (auto, number, ...)"
    )

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        given = [k for k in ("path", "hub", "generator", "benchmark") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, hub, generator or benchmark (got {given or 'none'})")
        if self.benchmark:
            from phaserl.eval.registry import get_benchmark

            try:
                get_benchmark(self.benchmark)
            except KeyError as e:
                raise ValueError(str(e).strip("\"'")) from None
        get_adapter(self.adapter)
        if self.fields:
            from phaserl.data.adapters.generic import MAPPABLE_FIELDS

            bad = sorted(set(self.fields) - set(MAPPABLE_FIELDS))
            if bad:
                raise ValueError(f"fields: unknown keys {bad}; mappable: {list(MAPPABLE_FIELDS)}")
        if self.answer_type is not None and self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type {self.answer_type!r} not in {ANSWER_TYPES}")
        if self.name is None:
            self.name = self.generator or self.hub or self.benchmark or _stem(self.path or "")
        return self


def _stem(path: str) -> str:
    p = Path(path.rstrip("/"))
    return p.stem if p.suffix in FILE_SUFFIXES else p.name


# ---- reading rows --------------------------------------------------------------------------------

Where = tuple[str, "int | None"]  # (file label, 1-based line or None) for error messages


def data_files(path: str) -> list[Path]:
    """The files a spec's path names: a file, every data file in a folder, or a glob's matches (sorted)."""
    if any(ch in path for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(path))]
    elif Path(path).is_dir():
        files = sorted(p for p in Path(path).iterdir() if p.suffix in FILE_SUFFIXES)
    else:
        files = [Path(path)]
    if not files or not files[0].exists():
        raise DataMissing("data file not found", path=path)
    for f in files:
        if f.suffix not in FILE_SUFFIXES:
            raise DataError(f"unsupported file type {f.suffix!r}; use one of {FILE_SUFFIXES}", path=str(f))
    return files


def iter_file_rows(path: Path) -> Iterator[tuple[Where, dict | DataError]]:
    """(where, row) for each row; a malformed row yields a DataError in place of the row."""
    if path.suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(path)
    elif path.suffix == ".json":
        yield from _json_rows(path)
    else:
        yield from _parquet_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[Where, dict | DataError]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = (str(path), line_no)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield (
                    where,
                    DataError(f"malformed JSON: {e.msg} (column {e.colno})", path=str(path), line=line_no),
                )
                continue
            if not isinstance(row, dict):
                yield (
                    where,
                    DataError(
                        f"row is a JSON {type(row).__name__}, not an object", path=str(path), line=line_no
                    ),
                )
                continue
            yield where, row


def _json_rows(path: Path) -> Iterator[tuple[Where, dict | DataError]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON: {e.msg} (column {e.colno})", path=str(path), line=e.lineno
        ) from None
    if isinstance(data, dict):  # {id: row} as in MathVista; the key becomes the id when the row has none
        items = [
            (str(k), {"id": k, **v} if isinstance(v, dict) and "id" not in v else v) for k, v in data.items()
        ]
    elif isinstance(data, list):
        items = [(str(i), row) for i, row in enumerate(data)]
    else:
        raise DataError("a .json data file must hold a list of rows or a dict of rows", path=str(path))
    for key, row in items:
        label = f"{path}[{key}]"
        if not isinstance(row, dict):
            yield (label, None), DataError(f"row is a JSON {type(row).__name__}, not an object", path=label)
        else:
            yield (label, None), row


def _parquet_rows(path: Path) -> Iterator[tuple[Where, dict | DataError]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading parquet needs pyarrow (pip install 'phaserl[datasets]')", path=str(path)
        ) from None
    idx = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield (f"{path}[{idx}]", None), row
            idx += 1


# ---- images --------------------------------------------------------------------------------------


def resolve_image(
    ref: Any,
    root: str | Path | None,
    check: bool = True,
    *,
    path_map: dict[str, str] | None = None,
    root_is_default: bool = False,
) -> Any:
    """One image reference made self-contained: absolute path string, bytes, a PIL image or a LazyImage.

    path_map replaces foreign path prefixes first (image_path_map). A relative path needs a root: with none
    (hub rows without image_root) it is an error; with the data file's folder as the default root, a file not
    found there is an error that says so. check=True verifies cheaply that a file exists and that bytes start
    like an image; pixels are decoded only when rendered. Remote http(s) URLs are refused: nothing is fetched
    at run time.
    """
    from PIL import Image

    if isinstance(ref, dict):  # Hugging Face datasets Image feature: {"bytes": ..., "path": ...}
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, (Image.Image, LazyImage)):
        return ref
    if isinstance(ref, (bytes, bytearray)):
        return _checked_bytes(bytes(ref)) if check else bytes(ref)
    if isinstance(ref, Path):
        ref = str(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise DataError(f"unsupported image reference {ref!r}", field="images")
    if ref.startswith("data:"):
        return _decode_base64(ref.partition(",")[2], check)
    if ref.startswith(("http://", "https://")):
        raise DataError(
            f"remote image URL {ref[:120]!r} is not fetched; download it and give a path", field="images"
        )
    mapped = map_image_path(ref, path_map)
    if not Path(mapped).expanduser().is_absolute() and root is None:
        if len(ref) > 100 and _BASE64.match(ref):
            return _decode_base64(ref, check)
        raise DataError(
            f"relative image path {mapped!r} and no image_root: set image_root to the folder these paths are "
            "relative to (or map them with image_path_map)",
            field="images",
        )
    path = resolve_image_path(mapped, root)
    if not path.is_file() and len(ref) > 100 and _BASE64.match(ref):
        return _decode_base64(ref, check)
    if check and not path.is_file():
        raise DataError(_not_found(ref, mapped, path, root_is_default, path_map), field="images")
    if check and path.stat().st_size == 0:
        raise DataError(f"empty image file: {path}", field="images")
    return str(path.absolute())


def _not_found(ref: str, mapped: str, path: Path, root_is_default: bool, path_map) -> str:
    if not Path(mapped).expanduser().is_absolute() and root_is_default:
        return (
            f"image not found: {path} (the relative path {mapped!r} resolved against the data file's "
            "folder, as no image_root is set; set image_root to the folder it is relative to)"
        )
    if Path(mapped).is_absolute() and mapped == ref.removeprefix("file://"):
        hint = (
            ""
            if path_map
            else (" (rows that carry another machine's paths need image_path_map: {old_prefix: new_prefix})")
        )
        return f"image not found: {path}{hint}"
    return f"image not found: {path}" + (f" (mapped from {ref!r})" if mapped != ref else "")


def _decode_base64(text: str, check: bool) -> bytes:
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as e:
        raise DataError(f"invalid base64 image data: {e}", field="images") from None
    return _checked_bytes(data) if check else data


def _checked_bytes(data: bytes) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"unreadable image bytes ({len(data)} bytes): {e}", field="images") from None
    return data


# ---- rows -> examples ----------------------------------------------------------------------------------------


def _rows(spec: DatasetSpec) -> Iterator[tuple[Where, dict | DataError, str | None]]:
    """(where, row, image_root) over every row the spec names; a file's rows default to its folder."""
    if spec.hub:
        for where, row in hub_rows(spec):
            yield where, row, spec.image_root
        return
    for file in data_files(spec.path or ""):
        root = spec.image_root if spec.image_root is not None else str(file.parent)
        for where, row in iter_file_rows(file):
            yield where, row, root


def _convert(
    row: dict, idx: int, where: Where, root: str | None, spec: DatasetSpec, adapter, check_images: bool
) -> Example:
    """Adapter + image resolution + spec overrides, every failure re-raised naming file and line."""
    try:
        ex = adapter(row, idx, spec)
        ex.images = [
            resolve_image(
                ref, root, check_images, path_map=spec.image_path_map, root_is_default=spec.image_root is None
            )
            for ref in ex.images
        ]
    except DataError as e:
        raise DataError(e.args[0], path=where[0], line=where[1], field=e.field) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"cannot read row: {type(e).__name__}: {e}", path=where[0], line=where[1]) from None
    if ex.caption is None and isinstance(row.get("caption"), str) and row["caption"].strip():
        ex.caption = row["caption"]
    if spec.answer_type is not None:
        ex.answer_type = spec.answer_type
    return ex


def load_examples(
    spec: DatasetSpec,
    *,
    skip_bad_rows: bool = False,
    check_images: bool = True,
    log: Callable[[str], None] = print,
) -> list[Example]:
    """All examples of one dataset (the first `limit`). Raises DataError on the first bad row unless
    skip_bad_rows, in which case each bad row is logged and a summary line follows."""
    if spec.generator:
        from phaserl.data.generators import generate

        examples = generate(spec.generator, **spec.generator_args)
        return _finish(examples[: spec.limit] if spec.limit is not None else examples, spec, log)
    if spec.benchmark:
        return _finish(_benchmark_examples(spec), spec, log)
    adapter = get_adapter(spec.adapter)
    examples: list[Example] = []
    skipped = total = 0
    for idx, (where, row, root) in enumerate(_rows(spec)):
        if spec.limit is not None and len(examples) >= spec.limit:
            break
        total += 1
        try:
            if isinstance(row, DataError):
                raise row
            examples.append(_convert(row, idx, where, root, spec, adapter, check_images))
        except DataError as e:
            if not skip_bad_rows:
                raise
            skipped += 1
            log(f"skipping bad row: {e}")
    if skipped:
        log(f"{spec.name}: skipped {skipped} bad rows of {total}; loaded {len(examples)} examples")
    return _finish(examples, spec, log)


def _finish(examples: list[Example], spec: DatasetSpec, log: Callable[[str], None]) -> list[Example]:
    """Forced answer type for generated sets; unique ids (the data tools resume by id)."""
    seen: dict[str, int] = {}
    renamed = 0
    for ex in examples:
        if spec.answer_type is not None:
            ex.answer_type = spec.answer_type
        count = seen.get(ex.id, 0)
        seen[ex.id] = count + 1
        if count:
            ex.id, renamed = f"{ex.id}#{count + 1}", renamed + 1
    if renamed:
        log(f"{spec.name}: {renamed} duplicate ids made unique with a '#k' suffix")
    return examples


def load_file(
    path: str,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    **kwargs,
) -> list[Example]:
    """Shorthand used by the data tools: load_examples on a local file."""
    spec = DatasetSpec(path=path, adapter=adapter, fields=fields or {}, image_root=image_root)
    return load_examples(spec, **kwargs)


def _benchmark_examples(spec: DatasetSpec) -> list[Example]:
    """A benchmark's examples from the local data directory, or from the hub when no local file exists."""
    from phaserl.eval.registry import load_benchmark

    try:
        return load_benchmark(spec.benchmark, limit=spec.limit)
    except DataError as local:
        try:
            return load_benchmark(spec.benchmark, limit=spec.limit, hub=True)
        except Exception as e:  # noqa: BLE001 (both ways failed: say both)
            raise DataError(f"{local}\nThe hub did not work either: {e}") from None
