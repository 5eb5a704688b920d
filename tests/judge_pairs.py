"""(gold, response) pairs for the judge-agreement tests, and the three judges that decide them.

Pairs are made by rewriting each gold answer of MATH-500 or OlympiadBench in ways a model writes answers:
the same answer reformatted (dfrac, spacing, \\left/\\right, `x = `, units, a boxed final-answer line, a
reordered list, a decimal for a fraction) and wrong answers (a neighbour item's gold, an integer off by
one, a percentage reading x 100). Each variant has a name, so every case has a stable key (item id,
variant) that a test can list.

Judges: `reference` (MATH's is_equiv re-implemented in math_is_equiv.py, or OlympiadBench's judge in
phaserl.eval.scorers.olympiad), `plain_math_verify` (math-verify's parse + verify with their defaults),
and phaserl's verifier (extract_answer, then Verifier.check_many with the item's tolerance).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from math_is_equiv import is_equiv, last_boxed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
_FRAC_RE = re.compile(r"^\\d?frac\{(\d+)\}\{(\d+)\}$")
_INT_RE = re.compile(r"^-?\d+$")
_DECIMAL_RE = re.compile(r"^-?\d+\.\d+$")


@dataclass(frozen=True)
class Pair:
    key: tuple[str, str]  # (item id, variant)
    gold: str
    response: str
    tolerance: float | None = None


def respond(answer: str) -> str:
    """A response that ends the way both benchmarks' prompts ask."""
    return f"We compute step by step.\nSo the final answer is $\\boxed{{{answer}}}$."


def _frac_value(answer: str) -> float | None:
    m = _FRAC_RE.match(answer.replace("\\dfrac", "\\frac").strip())
    return int(m.group(1)) / int(m.group(2)) if m and int(m.group(2)) else None


def math_variants(answer: str, neighbour: str) -> dict[str, str]:
    """Rewrites of a MATH answer: equal ones first, then wrong ones; only those that apply."""
    out = {"same": answer, "neighbour": neighbour}
    if "\\frac" in answer:
        out["dfrac"] = answer.replace("\\frac", "\\dfrac")
    if "(" in answer and "\\left" not in answer and "\\text" not in answer:
        out["left_right"] = answer.replace("(", "\\left(").replace(")", "\\right)")
    if "," in answer:
        out["comma_spacing"] = answer.replace(", ", ",") if ", " in answer else answer.replace(",", ", ")
    value = _frac_value(answer)
    if value is not None:
        out["decimal_3"] = f"{value:.3f}"
        out["slash"] = (
            answer.replace("\\dfrac", "\\frac").replace("\\frac{", "").replace("}{", "/").rstrip("}")
        )
    if _INT_RE.match(answer):
        out["prefix_x"] = f"x = {answer}"
        out["unit"] = f"{answer} \\text{{ units}}"
        out["off_by_one"] = str(int(answer) + 1)
        out["times_100"] = str(int(answer) * 100)
    if _DECIMAL_RE.match(answer):
        out["leading_zero_dropped"] = (
            answer.replace("0.", ".", 1) if answer.startswith("0.") else answer + "0"
        )
    return out


def _undollar(final: str) -> str:
    """An OlympiadBench final answer without its math delimiters: "$69$,$84$" is "69,84"."""
    return final.replace("$", "").strip().rstrip(".").strip()


def olympiad_variants(final: str, neighbour: str) -> dict[str, str]:
    """Rewrites of an OlympiadBench final answer (its $...$ dropped): equal ones, then wrong ones."""
    answer = _undollar(final)
    out = {"same": answer, "neighbour": _undollar(neighbour)}
    parts = [p.strip() for p in answer.split(",")]
    if len(parts) > 1 and "(" not in answer and "[" not in answer and "\\{" not in answer:
        out["reversed_list"] = ", ".join(reversed(parts))
    if "=" not in answer and "," not in answer and not answer.startswith(("(", "[")):
        out["prefix_x"] = f"x = {answer}"
    if "\\frac" in answer:
        out["dfrac"] = answer.replace("\\frac", "\\dfrac")
    value = _frac_value(answer)
    if value is not None:
        out["decimal_12"] = f"{value:.12f}"
        out["decimal_3"] = f"{value:.3f}"
    if _INT_RE.match(answer):
        out["off_by_one"] = str(int(answer) + 1)
        out["times_100"] = str(int(answer) * 100)
        out["over_100"] = str(int(answer) / 100)
        out["with_percent"] = f"{answer}\\%"
    return out


def math500_pairs(path: Path = SHARED / "math500" / "test.jsonl") -> list[Pair]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = []
    for i, row in enumerate(rows):
        neighbour = rows[(i + 1) % len(rows)]["answer"]
        for name, answer in math_variants(row["answer"], neighbour).items():
            pairs.append(Pair((row["unique_id"], name), row["answer"], respond(answer)))
    return pairs


def olympiad_pairs(path: Path = SHARED / "olympiadbench" / "OE_TO_maths_en_COMP.jsonl") -> list[Pair]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = []
    for i, row in enumerate(rows):
        final = row["final_answer"][0]
        neighbour = rows[(i + 1) % len(rows)]["final_answer"][0]
        tolerance = float(row["error"]) if row.get("error") else None
        for name, answer in olympiad_variants(final, neighbour).items():
            pairs.append(Pair((str(row["id"]), name), final, respond(answer), tolerance))
    return pairs


# ---- the judges ---------------------------------------------------------------------------------------


def math_reference(pair: Pair) -> bool:
    """MATH's own rule: the last box of the response, is_equiv with the gold."""
    return is_equiv(pair.gold, last_boxed(pair.response))


def olympiad_reference(pair: Pair) -> bool:
    """OlympiadBench's judge with the item's tolerance."""
    from phaserl.eval.scorers.olympiad import judge
    from phaserl.eval.scorers.olympiad_extract import final_answer_text

    return judge(pair.gold, final_answer_text(pair.response), pair.tolerance)


def plain_math_verify(pair: Pair) -> bool:
    """math-verify used as its README shows: parse the gold (in $...$) and the response, then verify."""
    from math_verify import parse, verify

    gold = parse(f"${pair.gold.strip().strip('$')}$")
    return bool(gold) and bool(verify(gold, parse(pair.response)))


def phaserl_verdicts(pairs: list[Pair], verifier) -> list[bool]:
    """phaserl's verifier: extract_answer, then the check with the item's tolerance (None counts as False)."""
    from phaserl.rewards.extract import extract_answer

    items = [
        {"gold": p.gold, "pred": extract_answer(p.response) or "", "tolerance": p.tolerance} for p in pairs
    ]
    return [v is True for v in verifier.check_many(items)]
