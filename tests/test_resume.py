"""Kill -9 at several points (mid-stage, between stages), rerun the same command: the final weights must be
bitwise equal to an uninterrupted run's. SIGTERM saves a checkpoint and exits cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SETS = ["stages.*.steps=2", "rollout.max_new_tokens=6", "logging.progress=false"]


def _cmd(out: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "phaserl",
        "train",
        str(ROOT / "recipes/smoke_tiny.yaml"),
        "--output",
        str(out),
    ]
    for s in SETS:
        cmd += ["--set", s]
    return cmd


def _run(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(out), capture_output=True, text=True, timeout=600, cwd=ROOT)


def _run_until(out: Path, ready, sig=signal.SIGKILL, timeout=300) -> int:
    """Start a run, send `sig` once ready(out) is true; return the exit code."""
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    t0 = time.time()
    try:
        while not ready(out):
            if proc.poll() is not None:
                raise AssertionError(f"run ended before the kill point: {proc.stderr.read()[-2000:]}")
            if time.time() - t0 > timeout:
                raise AssertionError("kill point never reached")
            time.sleep(0.02)
        proc.send_signal(sig)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def _finals(out: Path) -> dict:
    stages = sorted((out / "stages").iterdir())
    return {s.name: load_file(str(s / "final/model.safetensors")) for s in stages}


def _assert_same(a: Path, b: Path) -> None:
    fa, fb = _finals(a), _finals(b)
    assert fa.keys() == fb.keys() and len(fa) == 3
    for stage in fa:
        for k in fa[stage]:
            assert fa[stage][k].equal(fb[stage][k]), f"{stage}: {k} differs"


def _steps(out: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage_index"], r["step"]) for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    r = _run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _exists(rel: str):
    return lambda out: (out / rel / "COMPLETE").exists()


@pytest.mark.parametrize(
    "kill_point",
    [
        "stages/1-text/checkpoint-1",  # mid-stage 1
        "stages/1-text/final",  # between stages 1 and 2
        "stages/2-image-caption/checkpoint-1",  # mid-stage 2 (after a hand-off)
    ],
)
def test_sigkill_then_rerun_matches_uninterrupted(reference, tmp_path, kill_point):
    out = tmp_path / "run"
    code = _run_until(out, _exists(kill_point))
    assert code == -signal.SIGKILL
    r = _run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same(reference, out)
    assert _steps(out) == _steps(reference)  # no duplicated or missing metric rows


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(reference, tmp_path):
    out = tmp_path / "run"
    # checkpoint.every is raised so that only the signal handler can produce the mid-stage checkpoint
    SETS.append("checkpoint.every=100")
    try:
        code = _run_until(out, lambda o: (o / "metrics.jsonl").exists(), sig=signal.SIGTERM)
        assert code == 130
        ckpts = list((out / "stages/1-text").glob("checkpoint-*/COMPLETE"))
        assert ckpts, "SIGTERM left no checkpoint"
        r = _run(out)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "resuming from" in r.stdout
    finally:
        SETS.pop()
    _assert_same(reference, out)


def test_crash_leftover_is_ignored(tmp_path):
    from phaserl.checkpoint import latest_checkpoint, save_folder

    stage = tmp_path / "stage"
    save_folder(stage / "checkpoint-1", lambda d: (d / "x").write_text("1"))
    half = stage / "checkpoint-2"  # a folder without COMPLETE: what a crash mid-save would look like
    half.mkdir()
    (stage / ".checkpoint-3.tmp-123").mkdir()
    assert latest_checkpoint(stage).name == "checkpoint-1"
    os.environ.get("PHASERL_CACHE")
