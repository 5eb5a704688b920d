"""Rewards: strict format checks, answer extraction, and a safe, bounded answer verifier.

Importing this package is cheap (no torch, no sympy): names load on first use, so the verifier's
worker processes, which import `phaserl.rewards.compare`, start fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "extract_answer": "extract",
    "last_boxed": "extract",
    "answer_block": "extract",
    "think_answer_format": "format",
    "boxed_format": "format",
    "Verifier": "verify",
    "get_verifier": "verify",
    "accuracy": "accuracy",
    "REWARDS": "combine",
    "RewardSpec": "combine",
    "compute_rewards": "combine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'phaserl.rewards' has no attribute {name!r}")
    return getattr(importlib.import_module(f"phaserl.rewards.{_EXPORTS[name]}"), name)
