"""Finding benchmark images that are not shipped with the data (MathVista, MathVerse live on the hub only).

A loader lists, for each item, the image path the benchmark file names; `attach_images` looks for each one
under the folders the user gave and applies the missing-image policy:
  error   stop and list the items that lack an image (the default: silently scoring a VQA benchmark
          text-only produces numbers nobody can compare)
  skip    drop those items (and say which)
  text    keep them without the image (text-only evaluation, only when asked)
  ignore  do not look for images at all (scoring saved responses needs only the answers)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example

MISSING_IMAGE_POLICIES = ("error", "skip", "text", "ignore")
log = logging.getLogger(__name__)


class MissingImagesError(DataError):
    """Some items lack their image; `.ids` lists them and `.looked_in` the folders searched."""

    def __init__(self, message: str, ids: list[str], looked_in: list[str]):
        super().__init__(message)
        self.ids, self.looked_in = ids, looked_in


def locate_image(rel: str, roots: list[Path]) -> Path | None:
    """The first existing file among root/rel and root/basename(rel) for each root, else None."""
    for root in roots:
        for candidate in (root / rel, root / Path(rel).name):
            if candidate.is_file():
                return candidate
    return None


def _describe(ids: list[str], total: int, what: str, roots: list[Path]) -> str:
    shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    where = ", ".join(str(r) for r in roots) or "(no folder given)"
    return f"{what}: {len(ids)} of {total} items lack an image (looked in {where}); ids: {shown}"


def _resolve(ref: Any, roots: list[Path]) -> Any:
    """A path-like ref becomes an existing file path (or None); in-memory images (bytes, PIL, HF dicts) pass."""
    if isinstance(ref, (str, Path)):
        found = locate_image(str(ref), roots)
        return str(found) if found is not None else None
    return ref


def attach_images(
    pairs: list[tuple[Example, list[Any]]], roots: list[Path], policy: str, what: str
) -> list[Example]:
    """Resolve each example's relative image names under `roots` and apply `policy` to the missing ones."""
    if policy not in MISSING_IMAGE_POLICIES:
        raise ValueError(f"missing-image policy {policy!r} not in {MISSING_IMAGE_POLICIES}")
    if policy == "ignore":
        for ex, rels in pairs:
            ex.images = list(rels)
        return [ex for ex, _ in pairs]
    kept, missing = [], []
    for ex, rels in pairs:
        found = [_resolve(r, roots) for r in rels]
        if all(p is not None for p in found):
            ex.images = found
            kept.append(ex)
            continue
        missing.append(ex.id)
        if policy == "text":
            ex.images = []
            ex.meta["image_missing"] = True
            kept.append(ex)
    if missing:
        message = _describe(missing, len(pairs), what, roots)
        if policy == "error":
            raise MissingImagesError(
                message + ". Pass the folder holding the images (--image-dir), or choose --missing-images "
                "skip (drop these items) or text (evaluate them without the image).",
                ids=missing,
                looked_in=[str(r) for r in roots],
            )
        log.warning("%s; %s", message, "dropped" if policy == "skip" else "evaluated text-only")
    return kept
