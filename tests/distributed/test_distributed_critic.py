"""PPO with a learned critic (`algo.advantage: gae`) through the real trainer on 2 processes (gloo), launched as
users launch it: `accelerate launch --config_file configs/accelerate/{fsdp2,ddp}.yaml -m phaserl train`. A tiny
Qwen2.5-VL, two stages (text-only, then mixed text/image prompts, so a step can give one rank images and the
other none), the critic handed from the first stage to the second.

Checked: the run finishes; critic/* metrics are logged and finite on every step; under FSDP2 the critic really
is sharded (each rank holds half its parameter elements: `critic/local_param_share`), under DDP it is whole; each
stage's final/ holds a critic that loads, trained away from its start, and the second stage's critic starts from
the first's (one Adam step from it, not a fresh value head). Slow tier: a run killed with SIGKILL mid-stage and
rerun ends with the policy's and the critic's final weights bitwise equal to an uninterrupted run's, with a
critic lr schedule that changes every step (so the scheduler's state must resume too).

FSDP2 runs with activation checkpointing on, as tests/distributed/test_distributed_trainer.py does.
"""

import math
import time
from pathlib import Path

import launching
import pytest
import torch
import yaml

ROOT = launching.ROOT
CRITIC_LR = 1e-3
FAST = [
    "stages.*.steps=1",
    "rollout.max_new_tokens=4",
    "logging.progress=false",
    "model.gradient_checkpointing=true",
    "algo.kl_coef=0.0",
]
SLOW = [
    "stages.*.steps=3",
    "rollout.max_new_tokens=6",
    "logging.progress=false",
    "model.gradient_checkpointing=true",
    "algo.ppo_epochs=2",
    "algo.mini_batches=2",
    "optim.schedule=cosine",
    "critic.schedule=cosine",
]


def _recipe(folder: Path) -> Path:
    """smoke_tiny's first two stages (text; image+caption mixed 1:1 with text-only prompts), PPO with a
    critic."""
    rec = yaml.safe_load((ROOT / "recipes/smoke_tiny.yaml").read_text())
    rec["stages"] = rec["stages"][:2]
    rec["stages"][1]["data"][0]["weight"] = 1
    rec["algo"].update({"advantage": "gae", "kl_in": "reward"})
    rec["critic"] = {"lr": CRITIC_LR, "micro_batch_size": 4, "head_init_std": 0.01}
    path = folder / "critic_tiny.yaml"
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    return path


BACKENDS = ["fsdp2", "ddp"]


def _finals(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    got = {}
    for stage in sorted((out / "stages").iterdir()):
        got[stage.name] = load_file(str(stage / "final/model.safetensors"))
        got[stage.name + "/critic"] = load_file(str(stage / "final/critic/critic.safetensors"))
    return got


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ppo_critic_on_two_processes_through_the_trainer(tmp_path, backend):
    from phaserl.critic import is_critic_folder, load_critic
    from phaserl.models import load_model

    out = tmp_path / "run"
    launching.run(launching.command(backend, _recipe(tmp_path), out, FAST))
    steps = [r for r in launching.rows(out) if r.get("step", 0) > 0 and not r.get("final")]
    assert [(r["stage_index"], r["step"]) for r in steps] == [(0, 1), (1, 1)]
    for r in steps:
        for key in ("critic/value_loss", "critic/value_clip_frac", "critic/grad_norm", "critic/lr"):
            assert math.isfinite(r[key]), (key, r)
        assert r["critic/grad_norm"] > 0 and r["critic/lr"] == pytest.approx(CRITIC_LR)
        # FSDP2 shards the critic (half its elements on each of 2 ranks); DDP keeps it whole on each
        assert r["critic/local_param_share"] == pytest.approx(0.5 if backend == "fsdp2" else 1.0, abs=0.01), r
        assert r["dist/vision_forwards_min"] == r["dist/vision_forwards_max"] >= 1, r

    first, second = out / "stages/1-text/final/critic", out / "stages/2-image-caption/final/critic"
    assert is_critic_folder(first) and is_critic_folder(second)
    c1, c2 = load_critic(first), load_critic(second)
    start = dict(
        load_model("tiny:qwen2_5_vl").model.model.named_parameters()
    )  # the critic's starting backbone
    own = dict(c1.backbone.named_parameters())
    assert own.keys() == start.keys()
    assert any(not torch.equal(own[n].detach(), start[n].detach()) for n in own)  # the backbone trained
    # hand-over: stage 2 took stage 1's critic and made one Adam step (|change| <= lr per element), where a
    # fresh value head (drawn again, std 0.01) would differ far more
    h1, h2 = c1.value_head.weight.detach(), c2.value_head.weight.detach()
    assert 0 < float((h2 - h1).abs().max()) <= CRITIC_LR * 1.001


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_mid_stage_and_rerun_keeps_policy_and_critic_bitwise(tmp_path, backend):
    from phaserl.schedule import lr_factor

    recipe = _recipe(tmp_path)
    straight = tmp_path / "straight"
    launching.run(launching.command(backend, recipe, straight, SLOW))
    steps = [r for r in launching.rows(straight) if r.get("step", 0) > 0 and not r.get("final")]
    assert [r["critic/lr"] for r in steps] == pytest.approx(
        [CRITIC_LR * lr_factor(r["step"] - 1, 3, 0.0, "cosine") for r in steps]
    )  # changes every step

    out = tmp_path / "killed"
    proc = launching.start(launching.command(backend, recipe, out, SLOW))
    marker = out / "stages/2-image-caption/checkpoint-1/COMPLETE"
    deadline = time.time() + 900
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the run never reached stage 2's first checkpoint"
    assert (out / "stages/2-image-caption/checkpoint-1/critic/critic_scheduler.pt").is_file()
    launching.kill_tree(proc.pid)  # launcher and both ranks, mid-stage
    proc.wait()
    assert not (out / "stages/2-image-caption/final/COMPLETE").exists()
    r = launching.run(launching.command(backend, recipe, out, SLOW))
    assert "resuming from" in r.stdout
    a, b = _finals(straight), _finals(out)
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys(), part
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}: {name}"
