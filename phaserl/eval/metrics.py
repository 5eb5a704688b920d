"""Aggregating verdicts: accuracy, per-category breakdowns, pass@k and mean@k.

With K samples per item: mean@k is the average correctness over all N*K samples (an estimate of pass@1),
and pass@k is the unbiased estimator of Chen et al. 2021 (Codex, eq. 1): 1 - C(n-c, k) / C(n, k) for an
item with n samples of which c are correct, averaged over items.
"""

from __future__ import annotations

from collections import defaultdict
from math import comb
from typing import Any

from phaserl.data.schema import Example


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _cell(correct: float, total: int) -> dict[str, float]:
    count = int(correct) if float(correct).is_integer() else round(correct, 4)  # fractional with K samples
    return {"correct": count, "total": total, "accuracy": correct / total if total else 0.0}


def _values(value: Any) -> list[str]:
    """Meta values as breakdown keys; a list (MathVista skills) counts the item under each of its entries."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _natural(value: str) -> tuple:
    """Levels 1, 2, 10 in numeric order; names alphabetically after them."""
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def breakdown(examples: list[Example], scores: list[float], fields: tuple[str, ...]) -> dict[str, dict]:
    """{field: {value: {correct, total, accuracy}}} over the examples' meta; `scores` are per item in [0, 1]."""
    out: dict[str, dict] = {}
    for name in fields:
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for example, score in zip(examples, scores):
            for value in _values(example.meta.get(name)):
                sums[value][0] += score
                sums[value][1] += 1
        if sums:
            out[name] = {value: _cell(*sums[value]) for value in sorted(sums, key=_natural)}
    return out


def summarize(item_ids: list[str], correct: list[bool]) -> dict[str, Any]:
    """Accuracy over samples grouped by item: total/correct count items when K = 1, samples otherwise."""
    per_item: dict[str, list[bool]] = defaultdict(list)
    for item_id, ok in zip(item_ids, correct):
        per_item[item_id].append(ok)
    ks = {len(v) for v in per_item.values()}
    n_correct = sum(correct)
    result: dict[str, Any] = {
        "total": len(correct),
        "correct": n_correct,
        "accuracy": n_correct / len(correct) if correct else 0.0,
        "items": len(per_item),
    }
    if ks and max(ks) > 1:
        k = min(ks)
        result["samples_per_item"] = k if len(ks) == 1 else sorted(ks)
        result[f"mean@{k}"] = sum(sum(v) / len(v) for v in per_item.values()) / len(per_item)
        result[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_item.values()) / len(per_item)
    return result


def item_scores(item_ids: list[str], correct: list[bool]) -> dict[str, float]:
    """Per item, the fraction of its samples that are correct (what breakdowns average)."""
    per_item: dict[str, list[bool]] = defaultdict(list)
    for item_id, ok in zip(item_ids, correct):
        per_item[item_id].append(ok)
    return {k: sum(v) / len(v) for k, v in per_item.items()}
