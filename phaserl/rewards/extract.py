"""Answer extraction: the one function that both training rewards and evaluation use.

Model output is untrusted and may be huge (a 1 MB completion, 10,000 nested braces), so everything here
runs in linear time: braces are matched in one forward pass and no regex can backtrack.
"""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# "the answer is 7", "Final Answer: 7", "answer = 7", "the answer should be (D)"; the last one wins.
_ANSWER_IS_RE = re.compile(r"answer\s{0,5}(?:(?:is|should be|would be|must be|will be)\b|:|=)", re.IGNORECASE)
# A sentence ends at a period followed by white space (not the period of 3.5); also cut "I hope it is correct".
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
# What may stand between boxes that list one answer: commas, "and", spacing, math delimiters.
_LIST_SEP_RE = re.compile(r"(?:\s|,|;|&|\$|\\[()\[\]]|\\q?quad|\\[,;: !]|\\text\s*\{\s*and\s*\}|and)*")
_BOX_OPEN_TAIL_RE = re.compile(r"\\(?:boxed|fbox)\s*\{?$")
_MAX_LINES_BACK = 20  # how far final_line() looks up to close an environment split over lines


def match_braces(text: str) -> dict[int, int]:
    """Map the index of every `{` to the index of its matching `}` in one pass (escaped `\\{` skipped)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":  # `\{` and `\}` are literal braces in LaTeX, not groups
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every complete \\boxed{...} / \\fbox{...} / `\\boxed 5`, in order."""
    pairs = match_braces(text)
    spans = []
    for m in _BOX_RE.finditer(text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            if j in pairs:
                spans.append((j + 1, pairs[j]))
        elif j > m.end():  # `\boxed 5`: the argument is the next token
            k = j
            while k < len(text) and not text[k].isspace() and text[k] not in "$.,;":
                k += 1
            if k > j:
                spans.append((j, k))
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} or \\fbox{...} (nested braces handled), else None."""
    spans = boxed_spans(text)
    if not spans:
        return None
    start, end = spans[-1]
    return text[start:end]


def answer_block(text: str) -> str | None:
    """Content (stripped) of the last complete <answer>...</answer>, else None ("" when the block is empty)."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    if open_ < 0:
        return None
    return text[open_ + len("<answer>") : close].strip()


def _last_answer_is(text: str) -> tuple[int, str] | None:
    """(position, statement) of the last "the answer is ..." / "answer: ..." in `text`."""
    last = None
    for last in _ANSWER_IS_RE.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return None
    rest = text[last.end() :].lstrip(" :\t*")
    end = _SENTENCE_END_RE.search(rest)
    said = rest[: end.start()] if end else rest
    return last.start(), said.strip().strip("*").strip()


def answer_is(text: str) -> str | None:
    """What follows the last "the answer is" / "answer:" up to the end of that sentence, else None."""
    found = _last_answer_is(text)
    return found[1] if found else None


def boxed_group(text: str) -> tuple[int, str] | None:
    """(end position, content) of the last \\boxed{}, joined with the boxes listed right before it.

    "\\boxed{1}, \\boxed{2} and \\boxed{3}" is the answer "1, 2, 3"; boxes separated by anything else
    ("\\boxed{3} or \\boxed{4}", reasoning in between) are not merged, so hedging gains nothing.
    """
    spans = boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]
    for prev in reversed(spans[:-1]):
        between = _BOX_OPEN_TAIL_RE.sub("", text[prev[1] + 1 : group[0][0]])
        if not _LIST_SEP_RE.fullmatch(between):
            break
        group.insert(0, prev)
    return group[-1][1], ", ".join(text[a:b].strip() for a, b in group)


def _is_balanced(chunk: str) -> bool:
    """True when braces, display math and environments opened in `chunk` are also closed in it."""
    depth = 0
    for ch in chunk:
        depth += (ch == "{") - (ch == "}")
    return (
        depth == 0
        and chunk.count("$$") % 2 == 0
        and chunk.count("\\[") == chunk.count("\\]")
        and chunk.count("\\begin") == chunk.count("\\end")
    )


def final_line(text: str) -> str | None:
    """The last non-empty line; extended upward when it closes a matrix or display split over lines."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    for back in range(1, min(len(lines), _MAX_LINES_BACK) + 1):
        chunk = "\n".join(lines[-back:])
        if _is_balanced(chunk):
            return chunk.strip()
    return lines[-1].strip()


def _reasoning_stripped(text: str) -> str | None:
    """The part of a response after its reasoning; None when a <think> block was opened and never closed.

    An answer that only appears inside the reasoning does not count (a classic reward hack).
    """
    close = text.rfind("</think>")
    if close >= 0:
        return text[close + len("</think>") :]
    if "<think>" in text:
        return None
    return text


def _clean(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None


def _boxed_or_said(region: str) -> str | None:
    """The boxed answer or the "answer is" statement, whichever the text commits to last."""
    boxed = boxed_group(region)
    said = _last_answer_is(region)
    if said is not None and said[1] and (boxed is None or said[0] > boxed[0]):
        return said[1]
    return boxed[1] if boxed is not None else None


def _from_answer_region(region: str) -> str | None:
    """Inside an answer block: the boxed or stated answer, else the block's whole text."""
    found = _boxed_or_said(region)
    return _clean(found if found is not None else region)


def extract_answer(text: str) -> str | None:
    """The answer a response commits to, or None when it gives none (an empty answer is no answer).

    Order: the last <answer> block (its boxed or stated answer, else its text); else the last \\boxed{}
    (with boxes listed just before it) or "the answer is ...", whichever comes later; else the bare
    final line. Only what follows the reasoning counts: once an answer block exists nothing outside it
    does, and a <think> never closed means no answer.
    """
    region = _reasoning_stripped(text)
    if region is None:
        return None
    block = answer_block(region)
    if block is not None:
        return _from_answer_region(block)
    opened = region.rfind("<answer>")
    if opened >= 0:  # truncated before </answer>: still only the answer region counts
        return _from_answer_region(region[opened + len("<answer>") :])
    found = _boxed_or_said(region)
    if found is not None:
        return _clean(found)
    return _clean(final_line(region))
