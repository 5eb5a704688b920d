"""render(example, view, template) -> Prompt: the one place where an Example becomes chat messages.

Views (Infi-MMR's three phases are three views of one example):
  text           the question only; images are not shown (phase 1 text data)
  image+caption  the image(s), then a caption block, then the question (phase 2)
  image          the image(s), then the question (phase 3, caption-free)
A text-only example in an image view renders as text, so one stage can mix text and image data. An image
problem may carry a self-contained text form in meta["text_question"], which the text view then uses.
"""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict

from phaserl.data.images import load_image
from phaserl.data.schema import VIEWS, DataError, Example
from phaserl.types import Prompt

# The LMM-R1 contract (paper, Appendix E), in our words: reasoning inside <think></think>, then a LaTeX answer
# in $...$ inside <answer></answer>; output starts with <think> and ends with </answer>.
LMM_R1_SYSTEM = (
    "You solve math problems by reasoning step by step. First write your reasoning inside <think> </think> "
    "tags, then write the final answer in LaTeX, wrapped in $...$, inside <answer> </answer> tags. For example: "
    "<think> 3 apples plus 4 apples make $3+4=7$ apples. </think><answer> $7$ </answer>. Your output must "
    "start with <think> and end with </answer>."
)
BOXED_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class PromptTemplate(BaseModel):
    """How a prompt is worded. Fields are format strings over {question}, {caption}, {choices}."""

    model_config = ConfigDict(extra="forbid")
    system: str | None = None  # system message; None for no system message
    user: str = "{question}"  # the user text after any images
    caption: str = "Caption: {caption}\n\n"  # prepended to the user text in the image+caption view
    choices: str = "\nChoices:\n{choices}"  # appended when the example has options
    suffix: str = ""  # appended last (e.g. an instruction about the answer format)


TEMPLATES: dict[str, PromptTemplate] = {
    "plain": PromptTemplate(),
    "lmm_r1": PromptTemplate(system=LMM_R1_SYSTEM),
    "boxed": PromptTemplate(system=BOXED_SYSTEM),
    "think_answer": PromptTemplate(
        suffix="\nThink inside <think></think>, then give only the final answer inside <answer></answer>."
    ),
    "number": PromptTemplate(suffix=" Answer with just the number."),
}


def get_template(name_or_template: str | PromptTemplate | dict) -> PromptTemplate:
    if isinstance(name_or_template, PromptTemplate):
        return name_or_template
    if isinstance(name_or_template, dict):
        return PromptTemplate(**name_or_template)
    if name_or_template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name_or_template!r}; built-ins: {sorted(TEMPLATES)}")
    return TEMPLATES[name_or_template]


def format_choices(choices: list[str]) -> str:
    return "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, choices))


def user_text(example: Example, view: str, template: PromptTemplate) -> str:
    question = example.question
    if view == "text" and example.meta.get("text_question"):
        question = example.meta["text_question"]  # a self-contained text form of an image problem
    text = template.user.format(
        question=question, caption=example.caption or "", choices=format_choices(example.choices or [])
    )
    if example.choices and "{choices}" not in template.user:
        text += template.choices.format(choices=format_choices(example.choices))
    if view == "image+caption" and example.has_image:
        if not example.caption:
            raise DataError(
                f"example {example.id} ({example.source}): view 'image+caption' needs a caption; "
                "run `phaserl data caption` or use view 'image'"
            )
        text = template.caption.format(caption=example.caption) + text
    return text + template.suffix


def render(
    example: Example, view: str, template: str | PromptTemplate = "plain", image_root: str | None = None
) -> Prompt:
    """Messages for one example in one view. Image parts come before the text, as Qwen2.5-VL expects."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")
    tpl = get_template(template)
    images = []
    if view != "text":
        images = [load_image(ref, image_root, where=f"example {example.id}: ") for ref in example.images]
    text = user_text(example, view, tpl)
    if images:
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    else:
        content = text
    messages = []
    if tpl.system:
        messages.append({"role": "system", "content": tpl.system})
    messages.append({"role": "user", "content": content})
    return Prompt(messages=messages, images=images)
