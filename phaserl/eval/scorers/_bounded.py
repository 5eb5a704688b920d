"""Bounding computations on untrusted input: a size guard on expressions, and a wall-clock limit.

Symbolic work on model output can explode (`9^{9^{9^{9}}}` asks for an integer with 10^370000000 digits). The
first defence is structural: `too_big_to_evaluate` refuses towers of powers, huge exponents and factorials
before anything is evaluated, because one huge integer multiplication is C code no signal can interrupt.
The second is `run_bounded`, a SIGALRM wall clock for the pure-Python rest; it nests with an outer timer
(pytest-timeout's, say) and applies on the main thread only, where scoring runs (elsewhere signals cannot
be delivered; the size guard and input-length caps still hold).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Timeout


def _small_number(expr, limit: float) -> bool:
    """True when `expr` has no powers or factorials inside and evaluates to at most `limit` in size."""
    import sympy

    if expr.has(sympy.Pow, sympy.factorial, sympy.exp):
        return False
    if expr.free_symbols:
        return True  # a symbolic exponent is never evaluated to a huge integer
    try:
        return abs(complex(expr.evalf(15))) <= limit
    except (TypeError, ValueError):
        return False


def too_big_to_evaluate(expr) -> bool:
    """True for expressions whose evaluation could build astronomically large numbers."""
    import sympy

    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not _small_number(node.exp, MAX_EXPONENT):
            return True
        if isinstance(node, sympy.exp) and not _small_number(node.args[0], MAX_EXPONENT):
            return True
        if isinstance(node, (sympy.factorial, sympy.gamma)) and not _small_number(
            node.args[0], MAX_FACTORIAL
        ):
            return True
    return False


def run_bounded(fn: Callable[[], T], seconds: float, default: T) -> T:
    """fn() if it finishes within `seconds` without raising, else `default`.

    Any exception counts as "no result": the callers ask yes/no questions about untrusted text, and a
    parser error there means "cannot tell", never a crash of the whole evaluation.
    """
    if threading.current_thread() is not threading.main_thread():
        try:
            return fn()
        except Exception:
            return default
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    old_handler = signal.signal(signal.SIGALRM, _raise_timeout)
    limit = min(seconds, outer_left) if outer_left > 0 else seconds
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return fn()
    except Exception:  # _Timeout included
        return default
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer_left > 0:  # re-arm the outer timer with what is left of it (at least a moment)
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 1e-3))
