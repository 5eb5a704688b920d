"""Generic question/answer/image rows (JSONL, JSON, parquet), and phaserl's own canonical rows.

Sample row (every field but question and answer optional; names mappable with `fields:` in the config):

    {"id": "q1", "question": "What is 3 + 4?", "answer": "7", "images": ["img/q1.png"],
     "caption": "Three apples and four pears.", "choices": null, "answer_type": "number", "source": "toy"}

Without a mapping, common alternatives are recognised: question|problem|prompt|query, answer|final_answer|
ground_truth|gold, images|image|image_path|image_paths, choices|options, id|uid|qid|pid. A mapping such as
`fields: {question: problem, answer: reward_model.ground_truth}` names the key to use (dots reach into dicts).
A chat-style question (verl/EasyR1 parquet `prompt`: [{"role": "user", "content": "<image>Find x."}]) gives
its user text.

`example_to_row` is the inverse: what every data tool writes, so its outputs load back with this adapter.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

from phaserl.data.adapters._common import (
    chat_user_parts,
    choice_list,
    first_field,
    image_list,
    plain_meta,
    require_text,
    row_id,
    strip_image_tags,
)
from phaserl.data.schema import ANSWER_TYPES, DataError, Example

DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "uid", "qid", "pid"),
    "question": ("question", "problem", "prompt", "query"),
    "answer": ("answer", "final_answer", "ground_truth", "gold"),
    "images": ("images", "image", "image_path", "image_paths"),
    "caption": ("caption",),
    "choices": ("choices", "options"),
    "answer_type": ("answer_type",),
    "source": ("source", "data_source"),
    "tolerance": ("tolerance",),
    "rel_tolerance": ("rel_tolerance",),
}
MAPPABLE_FIELDS = tuple(DEFAULT_FIELDS)
# Answer-type spellings of other datasets (MathVista: integer/float/text) mapped onto ours.
_TYPE_ALIASES = {
    "integer": "number",
    "int": "number",
    "float": "number",
    "numeric": "number",
    "text": "string",
    "str": "string",
    "multi_choice": "choice",
    "multiple_choice": "choice",
    "multi-choice": "choice",
    "mc": "choice",
    "free_form": "auto",
    "expression": "math",
}


def to_example(row: dict, idx: int, spec) -> Example:
    keys = _keys(spec.fields)
    used = {k for ks in keys.values() for k in ks} | {"meta"}
    _, source = first_field(row, keys["source"])
    meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
    meta.update(plain_meta(row, used))
    question, chat_images = _question(row, keys["question"])
    return Example(
        id=row_id(row, keys["id"], spec, idx),
        question=question,
        answer=require_text(row, keys["answer"], "answer"),
        images=image_list(first_field(row, keys["images"])[1]) or chat_images,
        caption=_optional_text(row, keys["caption"]),
        answer_type=_answer_type(row, keys["answer_type"]),
        choices=_choices(row, keys["choices"]),
        source=str(source) if source else (spec.name or ""),
        tolerance=_optional_float(row, keys["tolerance"]),
        rel_tolerance=_optional_float(row, keys["rel_tolerance"]),
        meta=meta,
    )


def _keys(fields: dict[str, str]) -> dict[str, tuple[str, ...]]:
    unknown = set(fields) - set(DEFAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown field mapping keys {sorted(unknown)}; mappable: {list(MAPPABLE_FIELDS)}")
    return {name: (fields[name],) if name in fields else default for name, default in DEFAULT_FIELDS.items()}


def _question(row: dict, keys: tuple[str, ...]) -> tuple[str, list]:
    """The question text without `<image>` placeholders; a chat-style prompt (verl/EasyR1 parquet: a list of role/content messages) gives
    its user text, and its image parts serve when the row has no image field."""
    key, value = first_field(row, keys)
    if not isinstance(value, list):
        question = strip_image_tags(require_text(row, keys, "question"))
        if not question:
            raise DataError("the question is only an <image> placeholder", field=key)
        return question, []
    if not all(isinstance(m, dict) for m in value):
        raise DataError("a list-valued question must be chat messages {role, content}", field=key)
    texts, images = chat_user_parts(value, key)
    question = strip_image_tags("\n".join(t for t in texts if t.strip()))
    if not question:
        raise DataError("missing question (no user text in the chat)", field=key)
    return question, images


def _optional_text(row: dict, keys: tuple[str, ...]) -> str | None:
    _, value = first_field(row, keys)
    return str(value) if value is not None else None


def _choices(row: dict, keys: tuple[str, ...]) -> list[str] | None:
    key, value = first_field(row, keys)
    return choice_list(value, key or keys[0])


def _optional_float(row: dict, keys: tuple[str, ...]) -> float | None:
    key, value = first_field(row, keys)
    if key is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"expected a number, got {value!r}", field=key) from None


def _answer_type(row: dict, keys: tuple[str, ...]) -> str:
    key, value = first_field(row, keys)
    if key is None:
        return "auto"
    name = _TYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if name not in ANSWER_TYPES:
        raise DataError(f"unknown answer type {value!r}; use one of {ANSWER_TYPES}", field=key)
    return name


# ---- the inverse: Example -> canonical row ------------------------------------------------------------


def example_to_row(example: Example, out_dir: str | Path, image_dir: str | Path | None = None) -> dict:
    """A JSON-ready canonical row. Path images become paths relative to out_dir (the output file's folder);
    in-memory images (bytes, PIL) are written once, named by content hash, into image_dir."""
    out_dir = Path(out_dir)
    image_dir = Path(image_dir) if image_dir is not None else out_dir / "images"
    row: dict[str, Any] = {"id": example.id, "question": example.question, "answer": example.answer}
    if example.images:
        row["images"] = [_image_ref(ref, out_dir, image_dir) for ref in example.images]
    for name in ("caption", "choices", "tolerance", "rel_tolerance"):
        value = getattr(example, name)
        if value is not None:
            row[name] = value
    if example.answer_type != "auto":
        row["answer_type"] = example.answer_type
    if example.source:
        row["source"] = example.source
    if example.meta:
        row["meta"] = example.meta
    return row


def _image_ref(ref: Any, out_dir: Path, image_dir: Path) -> str:
    from PIL import Image

    from phaserl.data.images import LazyImage

    if isinstance(ref, LazyImage):  # a hub row's image: its bytes are written like any in-memory image
        ref = ref.read()
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, (str, Path)):
        path = str(ref)[len("file://") :] if str(ref).startswith("file://") else str(ref)
        return os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
    if isinstance(ref, Image.Image):
        buf = io.BytesIO()
        ref.save(buf, format="PNG")
        data, ext = buf.getvalue(), "png"
    elif isinstance(ref, (bytes, bytearray)):
        data = bytes(ref)
        ext = (Image.open(io.BytesIO(data)).format or "bin").lower()
    else:
        raise DataError(f"cannot write an image reference of type {type(ref).__name__}")
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"{hashlib.sha1(data).hexdigest()[:16]}.{ext}"
    if not path.exists():
        path.write_bytes(data)
    return os.path.relpath(path.resolve(), out_dir.resolve())
