"""Worker processes for the verifier: start, feed, time, kill and replace them.

Each worker is `python -m phaserl.rewards._worker` talking JSON lines over pipes (no pickle). A worker
gets one check at a time; the parent waits on all pipes with select() and SIGKILLs a worker whose check
has passed its deadline, then starts a replacement in the background.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_MAX_START_FAILURES = 3


@dataclass
class _Worker:
    proc: subprocess.Popen
    born: float
    ready: bool = False
    job: tuple[bytes, dict] | None = None
    sent: float = 0.0
    deadline: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()


def _spawn(max_memory_mb: int) -> _Worker:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "phaserl.rewards._worker", "--max-memory-mb", str(max_memory_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    return _Worker(proc, time.monotonic())


def _kill(worker: _Worker) -> None:
    if worker.proc.poll() is None:
        worker.proc.kill()
    worker.proc.wait()
    for pipe in (worker.proc.stdin, worker.proc.stdout):
        try:
            pipe.close()
        except OSError:
            pass


class WorkerPool:
    """A fixed number of worker slots; `run()` answers a queue of (key, request) within `timeout` each."""

    def __init__(self, workers: int, max_memory_mb: int, startup_timeout: float, stats: Counter):
        self.max_memory_mb = max_memory_mb
        self.startup_timeout = startup_timeout
        self.stats = stats
        self._start_failures = 0
        self._last_fatal = ""
        self.seconds: dict[bytes, float] = {}  # wall time of each check of the last run(), dispatch to answer
        self._workers = [_spawn(max_memory_mb) for _ in range(workers)]

    def alive(self) -> int:
        return sum(w.proc.poll() is None for w in self._workers)

    def close(self) -> None:
        for w in self._workers:
            _kill(w)
        self._workers = []

    def _replace(self, worker: _Worker, reason: str) -> None:
        _kill(worker)
        self.stats[reason] += 1
        self.stats["restarts"] += 1
        self._workers[self._workers.index(worker)] = _spawn(self.max_memory_mb)

    def _startup_failed(self, worker: _Worker, why: str) -> None:
        self._start_failures += 1
        self._last_fatal = why or self._last_fatal
        if self._start_failures >= _MAX_START_FAILURES:
            self.close()
            raise RuntimeError(f"verifier workers cannot start: {self._last_fatal or 'no reason given'}")
        self._replace(worker, "start_failures")

    def _send(self, worker: _Worker, key: bytes, request: dict, timeout: float, queue: deque) -> None:
        line = json.dumps({"id": key.hex(), **request}, ensure_ascii=True) + "\n"
        try:
            worker.proc.stdin.write(line.encode("ascii"))
            worker.proc.stdin.flush()
        except OSError:  # the worker died while idle: it never saw this check, so retry it elsewhere
            queue.appendleft((key, request))
            self._replace(worker, "crashes")
            return
        self.stats["sent"] += 1
        worker.job, worker.sent = (key, request), time.monotonic()
        worker.deadline = worker.sent + timeout

    def _finish(self, worker: _Worker, value: bool | None, out: dict) -> None:
        key = worker.job[0]
        out[key] = value
        self.seconds[key] = time.monotonic() - worker.sent
        worker.job = None

    def _on_message(self, worker: _Worker, message: dict, out: dict) -> None:
        if "fatal" in message:  # a deterministic start-up error (bad settings): retrying cannot help
            self.close()
            raise RuntimeError(f"verifier worker cannot start: {message['fatal']}")
        elif message.get("ready"):
            worker.ready = True
            self._start_failures = 0
        elif worker.job is not None and message.get("id") == worker.job[0].hex():
            if message.get("error"):
                self.stats["errors"] += 1
            self._finish(worker, message.get("result"), out)

    def _read(self, worker: _Worker, out: dict) -> None:
        chunk = os.read(worker.fd, 1 << 16)
        if not chunk:  # EOF: the worker died (crash, memory, or it exited after a MemoryError)
            if not worker.ready:
                self._startup_failed(worker, "")
                return
            if worker.job is not None:
                self._finish(worker, None, out)
            self._replace(worker, "crashes")
            return
        worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, _, rest = bytes(worker.buffer).partition(b"\n")
            worker.buffer = bytearray(rest)
            self._on_message(worker, json.loads(line), out)
            if worker not in self._workers:  # replaced while handling the message
                return

    def _expire(self, now: float, out: dict) -> None:
        for w in list(self._workers):
            if w.job is not None and now >= w.deadline:
                self._finish(w, None, out)
                self._replace(w, "timeouts")
            elif not w.ready and now - w.born > self.startup_timeout:
                self._startup_failed(w, f"no worker ready after {self.startup_timeout:.0f} s")

    def _wait_time(self, now: float) -> float:
        deadlines = [w.deadline for w in self._workers if w.job is not None]
        deadlines += [w.born + self.startup_timeout for w in self._workers if not w.ready]
        return max(0.0, min(deadlines) - now) if deadlines else 0.0

    def run(self, queue: deque, timeout: float) -> dict:
        """Answer every (key, request) in `queue`; a check that overruns `timeout` is None."""
        if not self._workers:
            raise RuntimeError("the verifier is closed")
        out: dict = {}
        self.seconds = {}
        while queue or any(w.job is not None for w in self._workers):
            for w in list(self._workers):
                if queue and w.ready and w.job is None:
                    self._send(w, *queue.popleft(), timeout, queue)
            self._poll(out)
        return out

    def _poll(self, out: dict) -> None:
        waiting = {w.fd: w for w in self._workers if w.job is not None or not w.ready}
        if waiting:
            readable, _, _ = select.select(list(waiting), [], [], self._wait_time(time.monotonic()))
            for fd in readable:
                if waiting[fd] in self._workers:
                    self._read(waiting[fd], out)
        self._expire(time.monotonic(), out)

    def wait_ready(self, timeout: float) -> None:
        """Block until every worker has started (or raise after `timeout`)."""
        end = time.monotonic() + timeout
        while not all(w.ready for w in self._workers):
            if time.monotonic() > end:
                raise TimeoutError("verifier workers did not start in time")
            self._poll({})
