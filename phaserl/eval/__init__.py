"""Evaluation: benchmark loaders, official-compatible scorers, the eval runner and its reports.

Entry points (the CLI wires these): `score_command` (phaserl score), `eval_command` (phaserl eval),
`evaluate_examples` (periodic evaluation inside training). Names load on first use, so importing the
package costs nothing (no sympy, no torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BENCHMARKS": "registry",
    "load_benchmark": "registry",
    "get_benchmark": "registry",
    "get_scorer": "registry",
    "score_command": "score",
    "eval_command": "runner",
    "evaluate_examples": "runner",
    "score_many": "scorers.base",
    "Verdict": "scorers.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'phaserl.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"phaserl.eval.{_EXPORTS[name]}"), name)
