"""Turn an image reference (path, file:// URL, bytes, PIL image) into an RGB PIL image."""

from __future__ import annotations

import io
from pathlib import Path

from phaserl.data.schema import DataError


def load_image(ref, root: str | Path | None = None, *, where: str = ""):
    """Load one image. `root` resolves relative paths; `where` names the example in errors."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(ref, Image.Image):
        return ref.convert("RGB") if ref.mode != "RGB" else ref
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


def resolve_image_path(ref: str | Path, root: str | Path | None = None) -> Path:
    s = str(ref)
    if s.startswith("file://"):
        s = s[len("file://"):]
    path = Path(s).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return path
