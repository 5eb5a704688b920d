"""Two data-parallel processes on the CPU (gloo), mixed text/image data on a VLM: no hang, identical replicas."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "run"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "phaserl", "train",
           str(ROOT / "recipes/smoke_tiny.yaml"), "--output", str(out), "--set", "stages.*.steps=2",
           "--set", "rollout.max_new_tokens=6", "--set", "logging.progress=false"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=850, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    checks = [x for x in rows if "replicas_identical" in x]
    # stage 1 is text-only on a VLM: the vision tower must still take part in every gradient all-reduce
    assert [(x["stage"], x["replicas"], x["replicas_identical"]) for x in checks] == [
        ("text", 2, True), ("image-caption", 2, True), ("image", 2, True)]
    steps = [(x["stage_index"], x["step"]) for x in rows if x.get("step", 0) > 0]
    assert steps == [(k, s) for k in range(3) for s in (1, 2)]
    assert r.stdout.count("done: 3 stage(s)") == 1
