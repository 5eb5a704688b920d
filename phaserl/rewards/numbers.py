"""Plain-number answers: thousands separators, decimal commas, percent, currency, units, tolerance.

Values are exact `Fraction`s so that 11111111100 and 0.1 + 0.2 compare the way a person expects. Sizes
are capped (digits, exponent, text length) so a number can never become a large computation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

_MAX_TEXT = 1_000  # a "plain number" longer than this is not one
_MAX_SCAN = 10_000  # last_number() looks at this many trailing characters
_MAX_DIGITS = 400
_DEFAULT_REL = Fraction(1, 10**6)  # floats printed to ~7 significant digits still match

_TEXT_WRAP_RE = re.compile(
    r"\\(?:text|mbox|mathrm|textbf|textnormal|textit|mathbf|operatorname)\s*\{([^{}]*)\}"
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_DROP_RE = re.compile(r"\\left|\\right|\\[!,;: ]|~|\\\(|\\\)|\\\[|\\\]|\$")
_FRAC_CMD_RE = re.compile(r"\\[dtc]frac")
_THIN_COMMA_RE = re.compile(r",\s*\\!\s*")

_PLAIN = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
_NUMBER = (
    r"(?P<sign>[+-])?\s*[€£¥₹]?\s*"
    r"(?:(?P<thou>[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?)"  # 1,234,567.89
    r"|(?P<space>[1-9][0-9]{0,2}(?: [0-9]{3})+(?:\.[0-9]+)?)"  # 1 234 567
    rf"|(?P<plain>{_PLAIN})"  # 12, 12.5, .5
    r"|(?P<comma>[0-9]+,[0-9]+))"  # 1,22 and 0,111: a decimal comma
    r"(?:\s*(?:[eE](?P<exp>[+-]?[0-9]{1,4})"
    r"|(?:\\times|\\cdot|\*|×)\s*10\s*\^\s*\{?(?P<exp10>[+-]?[0-9]{1,4})\}?))?"
)
_UNIT_TOKEN = r"(?:[A-Za-z]{2,}|[mgshlLKNJWV])(?:\^?\{?[23]\}?)?"
_TAIL = (
    r"\s*[€£¥₹]?\s*(?P<pct>%|percent(?:age)?|pct)?"
    rf"\s*(?:{_UNIT_TOKEN}(?:\s*(?:/|\s)\s*{_UNIT_TOKEN})*)?\s*\.?"
)
_WHOLE_RE = re.compile(rf"\s*{_NUMBER}{_TAIL}", re.ASCII)
_FRACTION_RE = re.compile(
    r"\s*(?P<sign>[+-])?\s*(?:\\frac\s*\{\s*(?P<a>[+-]?[0-9.]+)\s*\}\s*\{\s*(?P<b>[+-]?[0-9.]+)\s*\}"
    r"|\\frac(?P<a1>[0-9])(?P<b1>[0-9])|(?P<a2>[0-9.]+)\s*/\s*(?P<b2>[0-9.]+))\s*\.?",
    re.ASCII,
)
# Candidates for the last number in running text: not glued to a letter before it (AZYUK2A is no 2).
_SCAN_RE = re.compile(
    r"(?<![A-Za-z0-9.])(?P<sign>-)?"
    r"(?:(?P<thou>[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?)(?![0-9])"
    r"|(?P<comma>[0-9]+,[0-9]{1,2})(?![0-9])"
    r"|(?P<plain>[0-9]+(?:\.[0-9]+)?|\.[0-9]+))"
    r"(?P<pct>\s?%)?",
    re.ASCII,
)


@dataclass(frozen=True)
class Num:
    """A parsed number; `percent` remembers a % sign so that 28% may also mean 0.28."""

    value: Fraction
    percent: bool = False


def undress(text: str) -> str:
    """Remove LaTeX and unicode dressing around a number ($, \\text{}, \\left, \\!, degrees, full width)."""
    s = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    s = s.replace("\\%", "%").replace("\\$", "$").replace("{,}", ",")
    s = _THIN_COMMA_RE.sub(",", s)  # "11,\\! 111" is LaTeX for 11,111
    s = _TEXT_WRAP_RE.sub(lambda m: " " + m.group(1) + " ", s)
    s = _DEGREE_RE.sub(" ", s)
    s = _FRAC_CMD_RE.sub(r"\\frac", s)
    s = _DROP_RE.sub(" ", s)
    s = re.sub(r"\s+\^", "^", s)
    return " ".join(s.split())


def _to_fraction(digits: str, exp: str | None) -> Fraction | None:
    if sum(ch.isdigit() for ch in digits) > _MAX_DIGITS:
        return None
    value = Fraction(digits.rstrip(".") or "0")
    if exp:
        value *= Fraction(10) ** int(exp)
    return value


def _from_match(m: re.Match) -> Num | None:
    groups = m.groupdict()
    if groups.get("thou"):
        digits = groups["thou"].replace(",", "")
    elif groups.get("space"):
        digits = groups["space"].replace(" ", "")
    elif groups.get("comma"):
        digits = groups["comma"].replace(",", ".")
    else:
        digits = groups["plain"]
    value = _to_fraction(digits, groups.get("exp") or groups.get("exp10"))
    if value is None:
        return None
    if groups.get("sign") == "-":
        value = -value
    return Num(value, bool(groups.get("pct")))


def _fraction(s: str) -> Num | None:
    m = _FRACTION_RE.fullmatch(s)
    if m is None:
        return None
    a = m.group("a") or m.group("a1") or m.group("a2")
    b = m.group("b") or m.group("b1") or m.group("b2")
    try:
        num, den = _to_fraction(a, None), _to_fraction(b, None)
    except (ValueError, ZeroDivisionError):
        return None
    if num is None or den is None or den == 0:
        return None
    value = num / den
    return Num(-value if m.group("sign") == "-" else value)


def parse_number(text: str) -> Num | None:
    """The value of `text` when the whole text is one number (with units, %, currency), else None.

    "7,425,000" -> 7425000, "1,22" -> 1.22 (decimal comma), "$1,000.99" -> 1000.99, "28 percent" -> 28%,
    "12 cm^2" -> 12, "\\frac{10}{9}" -> 10/9, "3.2e5" -> 320000; "5x" and "2 or 3" are not numbers.
    """
    if len(text) > _MAX_TEXT:
        return None
    s = undress(text)
    if not s:
        return None
    m = _WHOLE_RE.fullmatch(s)
    if m is not None:
        try:
            return _from_match(m)
        except (ValueError, ZeroDivisionError):
            return None
    return _fraction(s)


def last_number(text: str) -> Num | None:
    """The last number written in running text ("3 + 4 = 7" -> 7, "x = -5 cm" -> -5), else None."""
    s = undress(text[-_MAX_SCAN:])
    last = None
    for last in _SCAN_RE.finditer(s):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return None
    try:
        return _from_match(last)
    except (ValueError, ZeroDivisionError):
        return None


def _variants(n: Num) -> list[Fraction]:
    return [n.value, n.value / 100] if n.percent else [n.value]


def _close(gold: Fraction, pred: Fraction, tolerance: float | None, rel_tolerance: float | None) -> bool:
    diff = abs(gold - pred)
    if diff == 0:
        return True
    if tolerance is None and rel_tolerance is None:
        if gold.denominator == 1 and pred.denominator == 1:
            return False  # two different whole numbers: 3986730 is not 3986729, however large
        return diff <= _DEFAULT_REL * abs(gold)
    if tolerance is not None and diff <= Fraction(tolerance):
        return True
    return rel_tolerance is not None and diff <= Fraction(rel_tolerance) * abs(gold)


def numbers_equal(
    gold: Num, pred: Num, tolerance: float | None = None, rel_tolerance: float | None = None
) -> bool:
    """Equal within the example's absolute or relative tolerance (either suffices), else within 1e-6 relative
    (two whole numbers, though, only when equal).

    A % on either side also allows the /100 reading: gold 28% matches 28 and 0.28.
    """
    return any(_close(g, p, tolerance, rel_tolerance) for g in _variants(gold) for p in _variants(pred))
