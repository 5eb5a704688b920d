"""ViRL39K (TIGER-Lab, VL-Rethinker's RL set): 38,870 verifiable image questions; golds are in \\boxed{}.

Sample row (the release parquet; some re-uploads name the fields problem/images instead):

    {"qid": "MMK12-1a2b", "question": "<image>In the figure, AB = AC and angle A = 40 degrees. Find angle B.",
     "answer": "\\boxed{70^\\circ}", "image": ["images/MMK12-1a2b-0.png"], "category": "(GradeSchool) Geometric",
     "source": "MMK12", "PassRate_32BTrained": 0.5, "PassRate_7BTrained": 0.25}

The box is removed from the gold, `<image>` tags from the question; the PassRate annotations go into meta so
that a stage can select problems by difficulty.
"""

from __future__ import annotations

from phaserl.data.adapters._common import (
    first_field,
    image_list,
    looks_like_choice,
    plain_meta,
    require_text,
    row_id,
    strip_image_tags,
    unbox,
)
from phaserl.data.schema import Example

_USED = {"qid", "id", "question", "problem", "answer", "image", "images", "source"}


def to_example(row: dict, idx: int, spec) -> Example:
    question = strip_image_tags(require_text(row, ("question", "problem"), "question"))
    answer = unbox(require_text(row, ("answer",), "answer"))
    _, source = first_field(row, ("source",))
    return Example(
        id=row_id(row, ("qid", "id"), spec, idx),
        question=question,
        answer=answer,
        images=image_list(first_field(row, ("image", "images"))[1]),
        answer_type="choice" if looks_like_choice(question, answer) else "auto",
        source=str(source) if source else "virl39k",
        meta=plain_meta(row, _USED),
    )
