"""MATH-style answer normalisation (Hendrycks et al.'s `_strip_string`) in the variant MATH-V evaluates with.

Reproducing the official MathVision numbers means reproducing its quirks too, so they are kept on purpose
and marked QUIRK: fraction repair runs only when the string mentions `sqrt`, and `%` without a backslash
survives. Every helper is a plain string function; nothing here evaluates anything.
"""

from __future__ import annotations


def fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{72}` -> `\\frac{1}{72}`; a too-short `\\frac` leaves s unchanged."""
    head, *rest = s.split("\\frac")
    out = [head]
    for part in rest:
        out.append("\\frac")
        if part.startswith("{"):
            out.append(part)
            continue
        if len(part) < 2:
            return s
        num, den, tail = part[0], part[1], part[2:]
        out.append("{" + num + "}" + (den if den == "{" else "{" + den + "}") + tail)
    return "".join(out)


def fix_a_slash_b(s: str) -> str:
    """`3/4` (two plain integers) -> `\\frac{3}{4}`; anything else unchanged."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def fix_sqrt(s: str) -> str:
    """`\\sqrt3` -> `\\sqrt{3}` (only the first character is taken as the radicand)."""
    head, *rest = s.split("\\sqrt")
    out = [head]
    for part in rest:
        if part and part[0] != "{":
            out.append("\\sqrt{" + part[0] + "}" + part[1:])
        else:
            out.append("\\sqrt" + part)
    return "".join(out)


_DROP = (
    "\n",
    "\\!",
)
_LATEX_NOISE = ("\\left", "\\right", "^{\\circ}", "^\\circ", "\\$", "$")


def strip_string(s: str) -> str:
    """Normalise one answer string the way MATH-V's `_strip_string` does."""
    for token in _DROP:
        s = s.replace(token, "")
    s = s.replace("\\\\", "\\").replace("tfrac", "frac").replace("dfrac", "frac")
    for token in _LATEX_NOISE:
        s = s.replace(token, "")
    s = s.split("\\text{ ")[0]  # units written as `\text{ cm}` on the right
    s = s.replace("\\%", "")  # QUIRK: a bare `%` is kept
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if s.count("=") == 1:
        s = s.split("=")[-1]
    if s.count("\\approx") == 1:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:  # QUIRK: fractions are repaired only next to a square root
        s = fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return fix_a_slash_b(s)
