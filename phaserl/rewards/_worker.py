"""One verifier worker: reads JSON requests on stdin, writes one JSON reply per line, forever.

Run as `python -m phaserl.rewards._worker --max-memory-mb N` by verify.Verifier, which kills and
replaces it when a check passes its wall-clock bound. It is a fresh interpreter (never a fork of a
parent holding torch and threads), and math-verify runs in its main thread with its own signal
timeouts off. Replies go to a private copy of stdout so stray prints cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time

_HEADROOM_MB = 64  # room for one ordinary check above the loaded interpreter


def _footprint_mb() -> float:
    """This process's address space now (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _limit_memory(max_memory_mb: int) -> None:
    """RLIMIT_AS caps the whole address space: a runaway sympy computation gets MemoryError, not the host."""
    if max_memory_mb <= 0:
        return
    need = _footprint_mb() + _HEADROOM_MB
    if max_memory_mb < need:
        raise ValueError(
            f"max_memory_mb={max_memory_mb} is below what a worker needs to run (~{need:.0f} MB)"
        )
    limit = max_memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """A worker must not outlive its pool: exit as soon as the parent process is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _reply(out, message: dict) -> None:
    out.write(json.dumps(message, ensure_ascii=True) + "\n")
    out.flush()


def _serve(out, decide) -> None:
    for line in sys.stdin:
        req = json.loads(line)
        message = {"id": req["id"], "result": None}
        fatal = False
        try:
            message["result"] = decide(
                req["gold"],
                req["pred"],
                req.get("answer_type", "auto"),
                req.get("choices"),
                req.get("tolerance"),
                req.get("rel_tolerance"),
            )
        except (MemoryError, RecursionError) as err:  # the interpreter may be damaged: reply, then go
            message["error"], fatal = type(err).__name__, True
        except Exception as err:  # any failure of one check is that check's None
            message["error"] = f"{type(err).__name__}: {err}"[:500]
        _reply(out, message)
        if fatal:
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-memory-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="ascii")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        from phaserl.rewards.compare import decide, quiet_math_verify

        quiet_math_verify()
        decide("\\frac{1}{2}", "0.5")  # load math-verify and its grammar now, not during the first check
        decide("$x^2$", "x \\cdot x")
        _limit_memory(args.max_memory_mb)
        _exit_with_parent()
    except BaseException as err:  # report why the worker cannot start, then exit
        _reply(out, {"fatal": f"{type(err).__name__}: {err}"[:2000]})
        return 1
    _reply(out, {"ready": True, "pid": os.getpid()})
    _serve(out, decide)
    return 0


if __name__ == "__main__":
    sys.exit(main())
