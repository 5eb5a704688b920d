"""The canonical training/evaluation item that every adapter produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How the rewards compare a prediction with the gold answer.
#   auto    decide from the gold answer (a letter with choices -> choice, a number -> number, else math)
#   math    symbolic equivalence (LaTeX, fractions, intervals, sets, equations)
#   number  numeric equality within tolerance / rel_tolerance
#   choice  multiple choice: a letter in its usual dressings, or the option text
#   string  normalised exact string match
ANSWER_TYPES = ("auto", "math", "number", "choice", "string")

# How an example is shown to the model (Infi-MMR's three phases are three views of one example).
VIEWS = ("text", "image+caption", "image")


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None
    ):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            if field is not None:
                where += f" (field '{field}')"
            where += ": "
        super().__init__(where + message)
        self.path, self.line, self.field = path, line, field


class DataMissing(DataError):
    """The data itself is not here (no such file): a dry run still prints its plan around it."""


@dataclass
class Example:
    """One problem.

    images: each entry is a filesystem path (str), raw bytes, or a PIL.Image; loaded lazily by the
    renderer, so a dataset of paths costs nothing until it is used.
    choices: option texts for multiple choice, in letter order (A, B, C, ...).
    tolerance / rel_tolerance: absolute / relative numeric tolerance for this example's answer.
    """

    id: str
    question: str
    answer: str | None = None
    images: list[Any] = field(default_factory=list)
    caption: str | None = None
    answer_type: str = "auto"
    choices: list[str] | None = None
    source: str = ""
    tolerance: float | None = None
    rel_tolerance: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_image(self) -> bool:
        return len(self.images) > 0

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"example {self.id}: answer_type {self.answer_type!r} not in {ANSWER_TYPES}")
