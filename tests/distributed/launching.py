"""Launching the real trainer on 2 CPU processes (gloo) the way users do, `accelerate launch --config_file
configs/accelerate/<backend>.yaml -m phaserl train RECIPE`, and killing it the way a crash does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(backend: str, recipe: Path, out: Path, sets: list[str]) -> list[str]:
    """The launch command for `backend` (ddp, fsdp2) with `--set` overrides, on a free port."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    cmd = [
        accelerate,
        "launch",
        "--config_file",
        str(ROOT / f"configs/accelerate/{backend}.yaml"),
        "--num_processes",
        "2",
        "--main_process_port",
        str(_port()),
        "-m",
        "phaserl",
        "train",
        str(recipe),
        "--output",
        str(out),
    ]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """Run to the end; a failure shows the tails of both streams."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return r


def start(cmd: list[str]) -> subprocess.Popen:
    """Start in the background, in its own session (for kill_tree)."""
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=ROOT, start_new_session=True
    )


def _descendants(pid: int) -> list[int]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += [int(child)] + _descendants(int(child))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torch's launcher puts its workers in their own sessions, so a
    process-group kill would leave the ranks running)."""
    for p in [pid] + _descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rows(out: Path) -> list[dict]:
    """The run's metrics.jsonl rows."""
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
