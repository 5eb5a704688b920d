"""Image references and their decoding: a path, file:// URL, bytes, a PIL image, or a LazyImage (a row of a
memory-mapped hub dataset). Examples hold references; pixels are decoded only by `load_image`, at render time,
so a 40k-row image set costs its paths (or its memory map), not 40k decoded images."""

from __future__ import annotations

import io
from pathlib import Path

from phaserl.data.schema import DataError


class LazyImage:
    """One image of one row of a `datasets.Dataset` in arrow format, read when asked for.

    The dataset is memory-mapped from the hub cache, so holding thousands of these costs no image memory;
    pickling one pickles the dataset by its cache files. `read()` gives the stored bytes (or the stored path
    when the row has no bytes)."""

    __slots__ = ("dataset", "row", "column", "index")

    def __init__(self, dataset, row: int, column: str, index: int | None = None):
        self.dataset, self.row, self.column, self.index = dataset, row, column, index

    def read(self) -> bytes | str:
        value = self.dataset[self.row].column(self.column)[0].as_py()  # one row of an arrow table
        if self.index is not None:
            value = value[self.index]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if not value:
            raise DataError(f"{self!r}: the row holds no image bytes or path")
        return value

    def __repr__(self) -> str:
        k = "" if self.index is None else f"[{self.index}]"
        return f"LazyImage(row {self.row}, column {self.column!r}{k})"


def load_image(ref, root: str | Path | None = None, *, where: str = ""):
    """Load one image. `root` resolves relative paths; `where` names the example in errors."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(ref, Image.Image):
        return ref.convert("RGB") if ref.mode != "RGB" else ref
    if isinstance(ref, LazyImage):
        try:
            ref = ref.read()
        except DataError as e:
            raise DataError(f"{where}{e}") from None
    try:
        if isinstance(ref, (bytes, bytearray)):
            img = Image.open(io.BytesIO(ref))
        elif isinstance(ref, dict) and ("bytes" in ref or "path" in ref):  # HF datasets Image feature
            return load_image(ref.get("bytes") or ref.get("path"), root, where=where)
        elif isinstance(ref, (str, Path)):
            path = resolve_image_path(ref, root)
            img = Image.open(path)
        else:
            raise DataError(f"{where}unsupported image reference of type {type(ref).__name__}")
        img.load()
    except FileNotFoundError as e:
        raise DataError(f"{where}image not found: {e.filename or ref}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where}unreadable image {str(ref)[:200]!r}: {e}") from e
    return img.convert("RGB")


def strip_file_url(ref: str) -> str:
    return ref[len("file://") :] if ref.startswith("file://") else ref


def map_image_path(ref: str, path_map: dict[str, str] | None) -> str:
    """Replace the longest matching prefix of `ref` by its new prefix (a recipe's `image_path_map`).

    Rows published with the authors' own cluster paths (LMM-R1's VerMulti: `file:///mnt/.../x.png`) become
    local paths; `file://` is ignored on both sides, so either spelling of a prefix matches."""
    s = strip_file_url(ref)
    for old in sorted(path_map or {}, key=len, reverse=True):
        prefix = strip_file_url(old)
        if prefix and s.startswith(prefix):
            return path_map[old] + s[len(prefix) :]
    return s


def resolve_image_path(ref: str | Path, root: str | Path | None = None) -> Path:
    path = Path(strip_file_url(str(ref))).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return path
