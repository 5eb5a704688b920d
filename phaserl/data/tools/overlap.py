"""Overlap detectors for decontamination: normalised word n-grams for text, perceptual hashes for images.

Text: a training item overlaps a benchmark item when the training text contains at least `threshold` of
the benchmark item's word n-grams (13 by default, as in the GPT-3 contamination study). A benchmark text
shorter than n words matches only when the training text is the same text; when both items carry images,
such a short generic question ("How many triangles are there?") alone is not a hit: the images decide.
Images: pHash (64 bits) within `max_distance` bits; near-uniform images (blank, one colour) are not
compared, since they all hash alike.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[^\W_]+")
_IMAGE_TAG = re.compile(r"<image\s*\d*>", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Lower-case word and number tokens; punctuation, spacing, LaTeX braces and <image> tags are ignored."""
    text = _IMAGE_TAG.sub(" ", unicodedata.normalize("NFKC", text)).lower()
    return _WORD.findall(text)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class TextHit:
    item: int  # index of the benchmark item
    overlap: float  # fraction of its n-grams found in the training text (1.0 for a whole short text)
    example: str  # one shared n-gram, for the report


@dataclass
class NgramIndex:
    """Benchmark texts by n-gram. Items with fewer than min_tokens words are too generic to match on text."""

    n: int = 13
    min_tokens: int = 8
    grams: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # n-grams per item (0: not indexed)
    short: dict[tuple[str, ...], list[int]] = field(default_factory=dict)  # whole texts under n words
    has_image: list[bool] = field(default_factory=list)

    def add(self, text: str, has_image: bool = False) -> int:
        tokens = words(text)
        idx = len(self.sizes)
        self.has_image.append(has_image)
        if len(tokens) >= self.n:
            grams = ngrams(tokens, self.n)
            for g in grams:
                self.grams.setdefault(g, []).append(idx)
            self.sizes.append(len(grams))
        else:
            if len(tokens) >= self.min_tokens:
                self.short.setdefault(tuple(tokens), []).append(idx)
            self.sizes.append(0)
        return idx

    def matches(self, text: str, threshold: float, has_image: bool = False) -> list[TextHit]:
        """Benchmark items this training text overlaps, best first."""
        tokens = words(text)
        hits: dict[int, int] = {}
        shown: dict[int, tuple[str, ...]] = {}
        for g in ngrams(tokens, self.n):
            for idx in self.grams.get(g, ()):
                hits[idx] = hits.get(idx, 0) + 1
                shown.setdefault(idx, g)
        out = [
            TextHit(idx, count / self.sizes[idx], " ".join(shown[idx]))
            for idx, count in hits.items()
            if count / self.sizes[idx] >= threshold
        ]
        for idx in self.short.get(tuple(tokens), ()):
            if not (has_image and self.has_image[idx]):
                out.append(TextHit(idx, 1.0, " ".join(tokens)))
        return sorted(out, key=lambda h: -h.overlap)


def hash_image(ref, where: str = "") -> int | None:
    """pHash of an image reference (path, bytes, PIL). JPEGs decode at reduced size (draft mode):
    much faster, and both sides of a comparison are hashed the same way."""
    from PIL import Image

    from phaserl.data.images import load_image

    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, (str, bytes, bytearray)):
        try:
            img = Image.open(io.BytesIO(ref) if isinstance(ref, (bytes, bytearray)) else ref)
            img.draft("L", (128, 128))
            return phash(img)
        except (OSError, ValueError):
            pass  # load_image below raises the DataError that names the example
    return phash(load_image(ref, where=where))


def phash(image) -> int | None:
    """64-bit perceptual hash of a PIL image; None for a near-uniform image (it would match any other)."""
    import imagehash
    from PIL import ImageStat

    grey = image.convert("L")
    if ImageStat.Stat(grey).stddev[0] < 2.0:
        return None
    return int(str(imagehash.phash(grey)), 16)


@dataclass
class ImageHit:
    item: int
    distance: int  # Hamming distance in bits


class HashIndex:
    """Benchmark image hashes; each lookup is one vectorised XOR + popcount over all of them."""

    def __init__(self) -> None:
        self._hashes: list[int] = []
        self._owners: list[int] = []
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, item: int, h: int | None) -> None:
        if h is not None:
            self._hashes.append(h)
            self._owners.append(item)
            self._array = None

    def matches(self, h: int | None, max_distance: int) -> list[ImageHit]:
        if h is None or not self._hashes:
            return []
        if self._array is None:
            self._array = np.array(self._hashes, dtype=np.uint64)
        dist = np.bitwise_count(self._array ^ np.uint64(h))  # [M]
        near = np.nonzero(dist <= max_distance)[0]
        best: dict[int, int] = {}
        for j in near:
            owner = self._owners[j]
            best[owner] = min(best.get(owner, 64), int(dist[j]))
        return sorted((ImageHit(i, d) for i, d in best.items()), key=lambda h: h.distance)
