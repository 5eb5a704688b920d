"""MathV360K (Math-LLaVA) and the VerMulti-style chat rows LMM-R1 trains on.

LLaVA conversation rows (MathV360K's train_samples_all_tuning.json, one JSON list; image paths are relative
to the unzipped data_images/, so give that folder as image_root; the first path component names the source
set). The gold is what the last gpt line states after "Answer:" / "The answer is", else the whole turn:

    {"id": "identity_12", "image": "TabMWP/images/12.png",
     "conversations": [{"from": "human", "value": "<image>\\nHint: ...\\nQuestion: How many ...?"},
                       {"from": "gpt", "value": "The answer is 5"}]}

VerMulti / LMM-R1 rows (mathv60k_message.jsonl): `message` (or `messages`) is a chat list stored as a JSON
string; image parts carry the authors' absolute `file://` paths, which a recipe maps to the unpacked
mathv60k_img/ with `image_path_map: {"file:///their/prefix/": "mathv60k_img/"}`; golds are inline math:

    {"message": "[{\\"role\\": \\"user\\", \\"content\\": [{\\"type\\": \\"image\\", \\"image\\": \\"file:///d/1.png\\"},
                  {\\"type\\": \\"text\\", \\"text\\": \\"Find the area of the triangle.\\"}]}]", "answer": "$12$"}

A system message in the row is dropped from the question (the prompt template supplies ours) and kept in
meta["system"].
"""

from __future__ import annotations

import json
import re

from phaserl.data.adapters._common import (
    chat_user_parts,
    image_list,
    looks_like_choice,
    require_text,
    row_id,
    strip_image_tags,
    unwrap_dollars,
)
from phaserl.data.schema import DataError, Example


def to_example(row: dict, idx: int, spec) -> Example:
    if "conversations" in row:
        return _llava(row, idx, spec)
    if "message" in row or "messages" in row:
        return _chat(row, idx, spec)
    raise DataError(
        "expected 'conversations' (MathV360K) or 'message' (VerMulti) in the row", field="conversations"
    )


def _llava(row: dict, idx: int, spec) -> Example:
    turns = row["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise DataError("conversations must be a list of {from, value} objects", field="conversations")
    human = [str(t.get("value", "")) for t in turns if t.get("from") in ("human", "user")]
    gpt = [str(t.get("value", "")) for t in turns if t.get("from") in ("gpt", "assistant")]
    if not human or not human[0].strip():
        raise DataError("missing question (no human turn)", field="conversations")
    if not gpt or not gpt[-1].strip():
        raise DataError("missing answer (no gpt turn)", field="conversations")
    question, answer = strip_image_tags(human[0]), final_answer(gpt[-1])
    images = image_list(row.get("image") or row.get("images"))
    first = str(images[0]) if images and isinstance(images[0], str) else ""
    source = first.split("/")[0] if "/" in first else "mathv360k"
    return _example(row, idx, spec, question, answer, images, source)


def _example(
    row: dict, idx: int, spec, question: str, answer: str, images: list, source: str, meta: dict | None = None
) -> Example:
    """Both row shapes' Example: a letter gold to a question that lists options is a choice answer."""
    return Example(
        id=row_id(row, ("id",), spec, idx),
        question=question,
        answer=answer,
        images=images,
        answer_type="choice" if looks_like_choice(question, answer) else "auto",
        source=source,
        meta=meta or {},
    )


# MathV360K's gpt turns end with the answer in one of a few dressings: "Answer:A", "The answer is 5".
_ANSWER_TAIL = re.compile(r"(?:answer\s*(?:is)?\s*[:：]?)\s*(.+?)\s*\.?\s*$", re.IGNORECASE | re.DOTALL)


def final_answer(text: str) -> str:
    """The answer a MathV360K gpt turn states: what follows its last "Answer:" / "The answer is"."""
    text = text.strip()
    last_line = text.splitlines()[-1].strip() if text else ""
    match = _ANSWER_TAIL.search(last_line)
    answer = match.group(1).strip() if match and match.group(1).strip() else text
    return unwrap_dollars(answer)


def _chat(row: dict, idx: int, spec) -> Example:
    key = "message" if "message" in row else "messages"
    messages = row[key]
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON in the chat string: {e.msg} (char {e.pos})", field=key) from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise DataError("expected a list of {role, content} messages", field=key)
    texts, images = chat_user_parts(messages, key)
    if not "".join(texts).strip():
        raise DataError("missing question (no user text)", field=key)
    question = strip_image_tags("\n".join(t for t in texts if t.strip()))
    answer = unwrap_dollars(require_text(row, ("answer",), "answer"))
    system = [m.get("content") for m in messages if m.get("role") == "system"]
    meta = {"system": system[0]} if system and isinstance(system[0], str) else {}
    return _example(row, idx, spec, question, answer, images, "vermulti", meta)
