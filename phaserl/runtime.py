"""Process-level settings that make CPU training faster, applied once when a run starts.

glibc's malloc serves large blocks (above a threshold that adapts up to 32 MB) with fresh mmap'd pages and
hands them back on free, so every step's [rows, tokens, vocab] logits and their gradients (about 100 MB
each at SmolLM2's 49k vocabulary) are page-faulted in anew, which costs more than the arithmetic on them.
Raising the mmap and trim thresholds keeps freed blocks in the heap for the next step to reuse. Peak memory
is unchanged (the same blocks are live at the peak); memory is returned to the system when the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and are reused
TRIM_THRESHOLD = 2 << 30  # keep up to 2 GiB of free heap top instead of trimming it after each step
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the malloc thresholds above (Linux with glibc only; PHASERL_MALLOPT=0 turns it off).

    Returns whether they are in effect. Safe to call more than once."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("PHASERL_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
