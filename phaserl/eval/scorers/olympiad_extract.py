"""OlympiadBench's judge, step 1: the answer text of a response (extract, clean) and its list of answers
(split on top-level commas; `\\pm` is expanded by phaserl.rewards.compare.expand_pm).

The rules and their official sources are in phaserl/eval/scorers/olympiad.py's docstring."""

from __future__ import annotations

import re

_SPECIAL = (
    ("\\left", ""),
    ("\\right", ""),
    ("∶", ":"),
    ("，", ","),
    ("$", ""),
    ("\\approx", "="),
    ("\\simeq", "="),
    ("\\sim", "="),
    ("^\\prime", "'"),
    ("^{\\prime}", "'"),
    ("^\\circ", ""),
    ("%", ""),
)
_STRIP_CHARS = "\n$,.:;^_=+`!@#$%^&*~，。"
_FONT_RE = re.compile(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}")
_DOLLAR_RE = re.compile(r"\$(.*?)\$")
_FINAL_ANSWER_RE = re.compile(r"So the final answer is (.*)")
_BOX_OPEN = "\\boxed{"


class UnclosedBox(ValueError):
    """A `\\boxed{` whose brace never closes: the official judge calls the whole item wrong."""


# ---- extraction ---------------------------------------------------------------------------------------


def final_answer_text(response: str) -> str:
    """What follows the last "So the final answer is" (the prompt's requested ending), else the response."""
    found = _FINAL_ANSWER_RE.findall(response)
    return found[-1].strip() if found else response


def _boxed_contents(text: str) -> list[str]:
    """Every `\\boxed{...}` content, braces counted raw (an escaped `\\{` counts too, as officially)."""
    contents, start = [], text.find(_BOX_OPEN)
    while start >= 0:
        i, depth = start + len(_BOX_OPEN), 1
        while depth and i < len(text):
            depth += (text[i] == "{") - (text[i] == "}")
            i += 1
        if depth:
            raise UnclosedBox(text[start : start + 40])
        contents.append(text[start + len(_BOX_OPEN) : i - 1])
        start = text.find(_BOX_OPEN, start + len(_BOX_OPEN))  # nested boxes are found again, as officially
    return contents


def extract(text: str) -> str:
    """All boxed answers, each followed by a comma; else the $...$ spans of the last line; else the text."""
    boxed = _boxed_contents(text)
    if boxed:
        return "".join(f"{b}," for b in boxed)
    found = _DOLLAR_RE.findall(text.strip().split("\n")[-1])
    return "".join(f"{a}," for a in found) if found else text


def clean(expr: str) -> str:
    """The official special-symbol replacement applied to an extracted answer."""
    if "\\in " in expr:
        expr = expr.split("\\in ")[1]
    for old, new in _SPECIAL:
        expr = expr.replace(old, new)
    expr = expr.strip(_STRIP_CHARS)
    return _FONT_RE.sub(r"\1", expr)


def preprocess(text: str) -> str:
    """extract + clean; raises UnclosedBox like the official preprocessing."""
    return clean(extract(text))


# ---- splitting ----------------------------------------------------------------------------------------


def split_top_level(expr: str) -> list[str]:
    """Split on commas outside ( ) and [ ] (braces do not nest here, as in the official judge)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    if start < len(expr):
        parts.append(expr[start:].strip())
    return parts
