"""MATH-Vision (MATH-V): competition problems with images; also read by the decontamination tool.

Sample row (data/test.jsonl of the MATH-V repository; images/<id>.jpg beside it):

    {"id": "2", "question": "Which bike is most expensive?\\n<image1>", "options": ["A", "B", "C", "D", "E"],
     "answer": "A", "solution": null, "level": 2, "subject": "arithmetic", "image": "images/2.jpg"}

Options that are only the letters (384 items: the choices are drawn in the image) are not listed as
choice texts, but the answer is still a multiple-choice letter.
"""

from __future__ import annotations

import string

from phaserl.data.adapters._common import choice_list, image_list, require_text, row_id, strip_image_tags
from phaserl.data.schema import Example


def to_example(row: dict, idx: int, spec) -> Example:
    options = choice_list(row.get("options"), "options")
    letters_only = bool(options) and options == list(string.ascii_uppercase[: len(options)])
    return Example(
        id=row_id(row, ("id",), spec, idx),
        question=strip_image_tags(require_text(row, ("question",), "question")),
        answer=require_text(row, ("answer",), "answer"),
        images=image_list(row.get("image") or row.get("images")),
        choices=None if letters_only else options,
        answer_type="choice" if options else "auto",
        source="mathvision",
        meta={k: row[k] for k in ("level", "subject") if row.get(k) is not None},
    )
