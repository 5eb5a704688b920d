"""Shaping rewards that vary even for random-weight models, so tiny end-to-end runs have real gradients.

Use in a recipe by import path: `rewards: [{name: "phaserl.testing.rewards:digit_fraction", weight: 0.1}]`.
"""

from __future__ import annotations


def digit_fraction(text: str, example=None) -> float:
    """Fraction of the response's characters that are digits (0 for an empty response)."""
    return sum(c.isdigit() for c in text) / len(text) if text else 0.0


def short_response(text: str, example=None) -> float:
    """1 / (1 + characters / 20): prefers short answers."""
    return 1.0 / (1.0 + len(text) / 20.0)
