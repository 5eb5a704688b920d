"""Rows of a Hugging Face hub dataset (`hub:` in a DatasetSpec), with images left undecoded.

`datasets` decodes an Image column into PIL images (and loads their pixels) when a row is read; a 40k-row
image set read that way would sit decoded in memory. Here the split is read in arrow format, batch by batch,
and each image becomes a LazyImage: a reference into the memory-mapped arrow cache, decoded by the renderer.
"""

from __future__ import annotations

from collections.abc import Iterator

from phaserl.data.images import LazyImage
from phaserl.data.schema import DataError, DataMissing

Where = tuple[str, "int | None"]  # (label, None): hub rows have no line numbers

HUB_INSTALL = "pip install 'phaserl[datasets]'"


def hub_rows(spec) -> Iterator[tuple[Where, dict | DataError]]:
    """Rows of a hub split. Image columns (Image or a list of Image) come as LazyImage references into the
    memory-mapped arrow cache, never as decoded PIL images; other columns as plain Python values."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"loading from the hub needs the `datasets` package ({HUB_INSTALL})", path=spec.hub
        ) from None
    try:
        ds = datasets.load_dataset(spec.hub, spec.subset, split=spec.split)
    except (ConnectionError, FileNotFoundError) as e:  # offline, or no such dataset/split: not here
        raise DataMissing(f"cannot load from the hub: {e}", path=spec.hub) from None
    image_columns = {name: _image_feature(f) for name, f in ds.features.items()}
    image_columns = {k: v for k, v in image_columns.items() if v is not None}
    table = ds.with_format("arrow")
    plain = [c for c in ds.column_names if c not in image_columns]
    idx = 0
    for batch in table.iter(batch_size=256):  # a pyarrow.Table per batch
        rows = batch.select(plain).to_pylist() if plain else [{} for _ in range(batch.num_rows)]
        for name, kind in image_columns.items():
            present = batch.column(name).to_pylist()  # this batch's bytes only; dropped after the refs
            for k, (row, value) in enumerate(zip(rows, present)):
                row[name] = _lazy_refs(table, idx + k, name, kind, value)
        for row in rows:
            yield (f"{spec.hub}[{spec.split}][{idx}]", None), row
            idx += 1


def _image_feature(feature) -> str | None:
    """ "one" for an Image column, "list" for a list of Image, None otherwise."""
    from datasets import Image

    if isinstance(feature, Image):
        return "one"
    inner = getattr(feature, "feature", None)
    if isinstance(inner, Image) or (isinstance(feature, list) and feature and isinstance(feature[0], Image)):
        return "list"
    return None


def _lazy_refs(table, row: int, column: str, kind: str, value) -> LazyImage | list[LazyImage] | None:
    def present(v) -> bool:
        return isinstance(v, dict) and bool(v.get("bytes") or v.get("path"))

    if kind == "one":
        return LazyImage(table, row, column) if present(value) else None
    return [LazyImage(table, row, column, k) for k, v in enumerate(value or []) if present(v)]
