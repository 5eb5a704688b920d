"""The trainer stays one screen: `run_stage` is the numbered loop and nothing else (setup lives in
stage_setup.py, rank agreement in ranks.py), and each step helper it calls exists once."""

from __future__ import annotations

import ast
import inspect

import phaserl.trainer as trainer


def _function(name: str) -> ast.FunctionDef:
    tree = ast.parse(inspect.getsource(trainer))
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_run_stage_fits_one_screen():
    fn = _function("run_stage")
    assert fn.end_lineno - fn.lineno + 1 <= 60


def test_run_stage_calls_the_numbered_steps_in_order():
    fn = _function("run_stage")
    loop = next(n for n in ast.walk(fn) if isinstance(n, ast.For))
    calls = [n.func.id for n in ast.walk(loop) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    steps = [c for c in calls if c in ("collect", "_advantages", "_update", "_log_and_save")]
    assert steps == ["collect", "_advantages", "_update", "_log_and_save"]
