"""PPO with a learned critic (`algo.advantage: gae`) through the real trainer: a tiny Qwen2.5-VL, three stages
(text-only, mixed text/image, image), the critic handed from stage to stage with the policy; a run killed with
SIGKILL mid-stage and rerun ends with the policy's and the critic's final weights bitwise equal to an
uninterrupted run's. The lr follows a cosine schedule, so the resumed step must also restore the critic's
scheduler."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SETS = [
    "stages.*.steps=2",
    "rollout.max_new_tokens=6",
    "logging.progress=false",
    "algo.advantage=gae",
    "algo.kl_in=reward",
    "algo.kl_coef=0.01",
    "algo.ppo_epochs=2",
    "algo.mini_batches=2",
    "critic.lr=1e-3",
    "critic.micro_batch_size=4",
    "critic.head_init_std=0.01",
    "optim.schedule=cosine",
]


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


def _weights(out: Path) -> dict:
    got = {}
    for stage in sorted((out / "stages").iterdir()):
        got[stage.name] = load_file(str(stage / "final/model.safetensors"))
        got[stage.name + "/critic"] = load_file(str(stage / "final/critic/critic.safetensors"))
    return got


@pytest.mark.slow
def test_ppo_with_a_critic_runs_hands_over_and_resumes_bitwise(tmp_path):
    straight = tmp_path / "straight"
    r = subprocess.run(_cmd(straight), capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in rows if x.get("step", 0) > 0 and not x.get("final")]
    assert len(steps) == 6
    assert all(
        x["critic/value_loss"] >= 0 and x["critic/value_loss"] == x["critic/value_loss"] for x in steps
    )
    assert [x["critic/lr"] for x in steps] == pytest.approx(
        [1e-3, 5e-4] * 3
    )  # cosine over each stage's 2 steps
    a = _weights(straight)
    first = load_file(str(straight / "stages/1-text/final/critic/critic.safetensors"))
    second = load_file(str(straight / "stages/2-image-caption/checkpoint-1/critic/critic.safetensors"))
    head = "value_head.weight"
    assert not first[head].equal(second[head])  # the critic kept training in stage 2, from stage 1's
    assert (straight / "stages/2-image-caption/checkpoint-1/critic/critic_optimizer.pt").exists()
    assert (straight / "stages/2-image-caption/checkpoint-1/critic/critic_scheduler.pt").exists()

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    marker = killed / "stages/2-image-caption/checkpoint-1/COMPLETE"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = subprocess.run(_cmd(killed), capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    b = _weights(killed)
    assert a.keys() == b.keys()
    for part in a:
        for name in a[part]:
            assert a[part][name].equal(b[part][name]), f"{part}: {name}"
