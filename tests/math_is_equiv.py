"""RE-IMPLEMENTATION, for tests only: the MATH dataset's `is_equiv` (hendrycks/math modeling/math_equivalence.py).

No package on PyPI ships it on its own: lm-eval carries a copy inside its task files, but installing it
pulls datasets, transformers and more into the environment, so this file re-implements the same steps from
reading the original (none of its code is copied). Quirks are kept: the comparison is of normalised strings,
and any error during normalisation falls back to comparing the raw strings. tests/rewards/test_rewards_math_is_equiv.py
checks it on hand-written cases. The one step MATH-V's variant keeps unchanged, `a/b` to a fraction, is
phaserl's own `math_strip.fix_a_slash_b` rather than a second copy.

Normalisation, in the original's order: drop newlines and `\\!`; `\\\\` becomes `\\`; tfrac/dfrac become frac;
drop `\\left`, `\\right`, degrees, `\\$`; cut a unit written `\\text{ ...}` (exactly one allowed, else an error);
drop percent signs; `.5` gains its 0; a short left side `k = ` is cut; `\\sqrt3` becomes `\\sqrt{3}`; spaces
go; `\\frac12` becomes `\\frac{1}{2}`; the string 0.5 becomes `\\frac{1}{2}`; `a/b` of two integers becomes
`\\frac{a}{b}`.
"""

from __future__ import annotations

from phaserl.eval.scorers.math_strip import fix_a_slash_b


class Malformed(Exception):
    """What the original's assertion and index errors become: fall back to the raw strings."""


def _brace_fractions(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{7} -> \\frac{1}{7}; a \\frac with under two characters after it: unchanged."""
    head, *pieces = s.split("\\frac")
    out = [head]
    for piece in pieces:
        if not piece:
            raise Malformed("\\frac at the end")
        if piece[0] == "{":
            out.append("\\frac" + piece)
            continue
        if len(piece) < 2:
            return s
        first, second, rest = piece[0], piece[1], piece[2:]
        if second == "{":
            out.append("\\frac{" + first + "}{" + rest)
        else:
            out.append("\\frac{" + first + "}{" + second + "}" + rest)
    return "".join(out)


def _drop_unit(s: str) -> str:
    """Everything before a `\\text{ ` (with its space): the original's unit rule; two such units are an error."""
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise Malformed("two units")
    return parts[0]


def _brace_sqrt(s: str) -> str:
    """\\sqrt3 -> \\sqrt{3} (one character); `\\sqrt` at the very end is an error."""
    head, *pieces = s.split("\\sqrt")
    out = [head]
    for piece in pieces:
        if not piece:
            raise Malformed("\\sqrt at the end")
        out.append("\\sqrt" + piece if piece[0] == "{" else "\\sqrt{" + piece[0] + "}" + piece[1:])
    return "".join(out)


def strip_string(s: str) -> str:
    """The MATH normal form of an answer string (may raise Malformed)."""
    for old, new in (
        ("\n", ""),
        ("\\!", ""),
        ("\\\\", "\\"),
        ("tfrac", "frac"),
        ("dfrac", "frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
    ):
        s = s.replace(old, new)
    s = _drop_unit(s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _brace_sqrt(s)
    s = s.replace(" ", "")
    s = _brace_fractions(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return fix_a_slash_b(s)  # the same rule in MATH and MATH-V: "3/4" -> \\frac{3}{4}, integers only


def is_equiv(a: str | None, b: str | None) -> bool:
    """MATH's verdict: equal normal forms; both None counts as equal; a normalisation error compares raw."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return strip_string(a) == strip_string(b)
    except (Malformed, IndexError):
        return a == b


def last_boxed(text: str) -> str | None:
    """MATH's extraction: the content of the last `\\boxed{...}`, braces counted raw; None when the last
    `\\boxed` (or, without one, `\\fbox`) is not a complete `\\boxed{...}` (the original's remove_boxed)."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                whole = text[start : i + 1]
                return whole[len("\\boxed{") : -1] if whole.startswith("\\boxed{") else None
    return None
