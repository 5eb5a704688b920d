"""Format rewards: does the response have the shape the recipe asks for? Each returns 1.0 or 0.0.

Both are strict on purpose: a lenient format check is the first thing a policy learns to exploit
(two answer blocks, text after </answer>, an empty answer; open-r1 #359).
"""

from __future__ import annotations

import re

from phaserl.rewards.extract import boxed_spans

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# LMM-R1: `^<think>.*?</think>\s*<answer>.*?</answer>$`, plus "each tag exactly once" so the lazy
# groups cannot swallow a second block.
_THINK_ANSWER_RE = re.compile(r"<think>(.*)</think>\s*<answer>(.*)</answer>", re.DOTALL)
_BOX_WORD_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# What may follow the one final \boxed{}: closing math delimiters, a full stop, a closing answer tag.
_AFTER_BOX_RE = re.compile(r"(?:\s|\$|\.|\\\]|\\\)|</answer>)*")


def think_answer_format(text: str, example=None) -> float:
    """1.0 iff the response is exactly `<think>...</think><answer>...</answer>` with a non-empty answer.

    Surrounding white space is allowed (tokenizers add newlines); anything else outside the two
    blocks, any repeated tag, or an empty answer scores 0.0.
    """
    s = text.strip()
    if not (s.startswith("<think>") and s.endswith("</answer>")):
        return 0.0
    if any(s.count(tag) != 1 for tag in _TAGS):
        return 0.0
    m = _THINK_ANSWER_RE.fullmatch(s)
    if m is None or not m.group(2).strip():
        return 0.0
    return 1.0


def boxed_format(text: str, example=None) -> float:
    """1.0 iff the answer part holds exactly one non-empty \\boxed{} and nothing but closing marks after it.

    The answer part is what follows the last </think> (the reasoning may quote boxes); a <think> that
    is never closed means no answer was given.
    """
    close = text.rfind("</think>")
    if close >= 0:
        region = text[close + len("</think>") :]
    elif "<think>" in text:
        return 0.0
    else:
        region = text
    if len(_BOX_WORD_RE.findall(region)) != 1:
        return 0.0
    spans = boxed_spans(region)
    if len(spans) != 1:
        return 0.0
    start, end = spans[0]
    if not region[start:end].strip():
        return 0.0
    tail = region[end + 1 :] if end < len(region) and region[end] == "}" else region[end:]
    return 1.0 if _AFTER_BOX_RE.fullmatch(tail) else 0.0
