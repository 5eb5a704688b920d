"""Process-level settings that make the CPU engine's runs faster, applied when the CPU engine is in use
(`prepare_cpu_engine`: `phaserl train`, `phaserl eval` and the data tools call it before loading a model whose
engine resolves to the CPU one; CPUEngine calls it too). Importing phaserl changes nothing.

A step allocates and frees the same large blocks over and over ([rows, tokens, vocab] logits and their
gradients, about 100 MB each at SmolLM2's 49k vocabulary; weight-sized gradient buffers). When a freed block
goes back to the system, the next step page-faults it in again, page by page, which can cost more than the
arithmetic on it. Two settings keep them:
- THP_MEM_ALLOC_ENABLE=1: torch then allocates blocks of 2 MB and more 2 MB-aligned, in transparent huge pages
  where the kernel allows them, so a freed large tensor is reused without page faults (tests/test_runtime.py; its
  effect on the update is in docs/performance.md). torch reads it at its first tensor allocation, so it is set
  before any model is loaded (importing torch allocates nothing); set later it has no effect. PHASERL_THP=0 opts out.
- `tune_allocator` raises glibc's mmap and trim thresholds, so blocks from plain malloc stay in the heap. It does
  not help torch's 64-byte-aligned large blocks (posix_memalign), which is why the setting above exists.
Peak memory is not raised: the same blocks are live at the peak; memory is returned when the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and are reused
TRIM_THRESHOLD = (
    1 << 31
) - 1  # keep up to 2 GiB of free heap top (mallopt takes a C int) instead of trimming it
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
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done


def prepare_cpu_engine() -> bool:
    """The settings above, for a run whose rollouts use the CPU engine: THP_MEM_ALLOC_ENABLE=1 (unless
    PHASERL_THP=0 or the variable is already set) and tune_allocator(). Returns whether the variable is "1".
    Safe to call more than once."""
    if os.environ.get("PHASERL_THP", "1") != "0":
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    tune_allocator()
    return os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
