"""The answer verifier: a small pool of killable worker processes with a hard bound on every check.

Why processes: math-verify's own timeout uses signals, which only work in a main thread and cannot
interrupt C code (Math-Verify #50, #55, #65); `2^{2^{2^{30}}}` can hang past it. Here each check runs in
a worker (a fresh interpreter, safe when the trainer holds torch and threads), the pool measures the
wall clock from outside and SIGKILLs and replaces a worker that overruns. RLIMIT_AS bounds its memory.
Repeated (gold, pred) pairs are answered from an LRU cache.

`check()` returns True / False, or None when undecidable (gold unparseable, timeout, crash, too long).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque

from phaserl.data.schema import ANSWER_TYPES
from phaserl.rewards.pool import WorkerPool

_KEYS = ("gold", "pred", "answer_type", "choices", "tolerance", "rel_tolerance")


def _request(item: dict) -> dict:
    """A validated wire request from a check_many() item (extra keys are ignored)."""
    gold, pred = item.get("gold"), item.get("pred")
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a string, got {type(gold).__name__}")
    if pred is not None and not isinstance(pred, str):
        raise TypeError(f"pred must be a string or None, got {type(pred).__name__}")
    answer_type = item.get("answer_type") or "auto"
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r} not in {ANSWER_TYPES}")
    choices = item.get("choices")
    return {
        "gold": gold,
        "pred": pred or "",
        "answer_type": answer_type,
        "choices": [str(c) for c in choices] if choices else None,
        "tolerance": item.get("tolerance"),
        "rel_tolerance": item.get("rel_tolerance"),
    }


def _key(request: dict) -> bytes:
    blob = json.dumps([request[k] for k in _KEYS], ensure_ascii=True).encode("ascii")
    return hashlib.blake2b(blob, digest_size=16).digest()


class Verifier:
    """Killable worker-process pool with a hard wall-clock bound per check, a memory bound and an LRU cache.

    workers: worker processes (each takes a while to start, so they live across checks); timeout: seconds per check, from the moment a worker
    receives it; max_memory_mb: address-space limit per worker; cache_size: remembered pairs (0 = off);
    max_chars: longer gold/pred strings are undecidable without being sent (no answer is that long).
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 5.0,
        max_memory_mb: int = 1024,
        cache_size: int = 100_000,
        *,
        max_chars: int = 20_000,
        startup_timeout: float = 120.0,
    ):
        if workers < 1 or timeout <= 0:
            raise ValueError("need workers >= 1 and timeout > 0")
        self.timeout = timeout
        self.cache_size = cache_size
        self.max_chars = max_chars
        self.stats: Counter = Counter()
        self._cache: OrderedDict[bytes, bool | None] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pool = WorkerPool(workers, max_memory_mb, startup_timeout, self.stats)
        self._finalizer = weakref.finalize(
            self, self._pool.close
        )  # a forgotten verifier still stops its workers
        self.last_seconds: list[
            float
        ] = []  # per item of the last check_many: seconds in a worker (0 = not sent)

    def check(
        self,
        gold: str,
        pred: str,
        *,
        answer_type: str = "auto",
        choices: list[str] | None = None,
        tolerance: float | None = None,
        rel_tolerance: float | None = None,
    ) -> bool | None:
        """Is the already-extracted `pred` the `gold` answer? None when undecidable."""
        return self.check_many(
            [
                {
                    "gold": gold,
                    "pred": pred,
                    "answer_type": answer_type,
                    "choices": choices,
                    "tolerance": tolerance,
                    "rel_tolerance": rel_tolerance,
                }
            ]
        )[0]

    def check_many(self, items: list[dict]) -> list[bool | None]:
        """check() for many items at once, in parallel across the pool; duplicates are checked once."""
        if os.getpid() != self._pid:
            raise RuntimeError("this Verifier belongs to another process; create one per process")
        requests = [_request(item) for item in items]
        keys = [_key(r) for r in requests]
        results: dict[bytes, bool | None] = {}
        with self._lock:
            todo: dict[bytes, dict] = {}
            for key, req in zip(keys, requests):
                if key in results or key in todo:
                    continue
                if key in self._cache:
                    self._cache.move_to_end(key)
                    results[key] = self._cache[key]
                    self.stats["cache_hits"] += 1
                elif len(req["gold"]) > self.max_chars or len(req["pred"]) > self.max_chars:
                    results[key] = None
                    self.stats["too_long"] += 1
                else:
                    todo[key] = req
            fresh = self._pool.run(deque(todo.items()), self.timeout) if todo else {}
            for key, value in fresh.items():
                self._remember(key, value)
            results.update(fresh)
            self.stats["checks"] += len(items)
            self.last_seconds = [self._pool.seconds.get(k, 0.0) if k in fresh else 0.0 for k in keys]
        return [results[k] for k in keys]

    def _remember(self, key: bytes, value: bool | None) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Block until every worker is up; returns the seconds waited (the visible start-up cost)."""
        t0 = time.perf_counter()
        with self._lock:
            self._pool.wait_ready(timeout)
        return time.perf_counter() - t0

    def alive_workers(self) -> int:
        """Workers running right now (a healthy pool has all of them)."""
        return self._pool.alive()

    def close(self) -> None:
        """Stop every worker; the verifier cannot be used afterwards."""
        if os.getpid() == self._pid:
            with self._lock:
                self._finalizer()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SINGLETON: Verifier | None = None
_SINGLETON_LOCK = threading.Lock()


def _close_singleton() -> None:
    if _SINGLETON is not None:
        _SINGLETON.close()


def get_verifier() -> Verifier:
    """The process-wide verifier, created on first use with default settings and closed at exit."""
    global _SINGLETON
    with _SINGLETON_LOCK:
        if _SINGLETON is None or _SINGLETON._pid != os.getpid():  # a forked child needs its own pool
            first = _SINGLETON is None
            _SINGLETON = Verifier()
            if first:
                atexit.register(_close_singleton)
        return _SINGLETON
