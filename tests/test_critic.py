"""The value model (phaserl/critic.py) on tiny models: value alignment under padding and mixed text/image
batches, the clipped-value-loss update (exact across micro-batches), save/load bitwise, LoRA, stage hand-over;
and the trainer's critic (phaserl/stage_critic.py) in one process: its lr schedule, bitwise resume with the
scheduler's state, and LoRA from the recipe's `model.lora`. Two processes (DDP, FSDP2):
tests/distributed/test_distributed_critic.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from phaserl.config import CriticConfig
from phaserl.critic import (
    build_critic,
    critic_for_stage,
    critic_optimizer,
    critic_update,
    critic_values,
    is_critic_folder,
    load_critic,
    load_critic_optimizer,
    save_critic,
    values_no_grad,
)
from phaserl.models import load_model
from phaserl.types import Prompt

TXT = Prompt(messages=[{"role": "user", "content": "What is 2+2?"}])
TXT2 = Prompt(messages=[{"role": "user", "content": "Name a prime number."}])
COMPS = [[11, 12, 13], [14, 15], [16, 17, 18, 19], [20]]


@pytest.fixture(scope="module")
def llama():
    return load_model("tiny:llama")


def _image_prompt():
    from PIL import Image

    return Prompt(
        messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}],
        images=[Image.new("RGB", (56, 56), (200, 30, 30))],
    )


@pytest.mark.parametrize("name", ["tiny:llama", "tiny:qwen2_5_vl"])
def test_values_of_a_padded_mixed_batch_equal_each_row_alone(name):
    lm = load_model(name)
    critic = build_critic(name, head_init_std=0.2)
    prompts = [_image_prompt(), _image_prompt(), TXT, TXT] if critic.is_vlm else [TXT, TXT, TXT2, TXT2]
    pad = lm.tokenizer.pad_token_id
    values, mask = critic_values(critic, lm.processor, prompts, COMPS, pad, False, "cpu")
    assert values.shape == mask.shape == (4, 4)
    for j in range(4):
        alone, _ = critic_values(
            critic, lm.processor, prompts[j : j + 1], COMPS[j : j + 1], pad, False, "cpu"
        )
        assert torch.allclose(values[j, : len(COMPS[j])], alone[0], atol=1e-5)
    assert values[0].std() > 0  # values differ along the completion
    listed = values_no_grad(critic, lm.processor, prompts, COMPS, pad, 2, False, "cpu")
    assert [len(v) for v in listed] == [3, 2, 4, 1]
    assert all(torch.allclose(v, values[j, : len(v)].detach(), atol=1e-5) for j, v in enumerate(listed))


def test_random_head_init_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_critic("tiny:llama", head_init_std=0.1, seed=5)
    after = torch.rand(3)
    b = build_critic("tiny:llama", head_init_std=0.1, seed=5)
    c = build_critic("tiny:llama", head_init_std=0.1, seed=6)
    assert torch.equal(before, after)  # the caller's stream is where it would be without the build
    assert torch.equal(a.value_head.weight, b.value_head.weight)
    assert not torch.equal(a.value_head.weight, c.value_head.weight)


def test_zero_head_starts_every_value_at_zero(llama):
    critic = build_critic("tiny:llama")
    values, _ = critic_values(
        critic, llama.processor, [TXT] * 4, COMPS, llama.tokenizer.pad_token_id, False, "cpu"
    )
    assert torch.count_nonzero(values) == 0
    assert critic.value_head.weight.dtype == torch.float32


def _update(critic, lm, cfg, returns, old=None, **kw):
    opt = kw.pop("optimizer", None) or critic_optimizer(critic, cfg)
    pad = lm.tokenizer.pad_token_id
    old = (
        old
        if old is not None
        else values_no_grad(critic, lm.processor, [TXT, TXT, TXT2, TXT2], COMPS, pad, 4, False, "cpu")
    )
    return critic_update(
        critic, opt, lm.processor, [TXT, TXT, TXT2, TXT2], COMPS, old, returns, cfg, pad, **kw
    ), opt


def test_update_fits_the_returns(llama):
    torch.manual_seed(0)
    critic = build_critic("tiny:llama")
    returns = [torch.full((len(c),), 1.0) for c in COMPS]
    cfg = CriticConfig(lr=3e-3, value_clip=None, micro_batch_size=2, max_grad_norm=None)
    first, opt = _update(critic, llama, cfg, returns)
    assert first["value_loss"] == pytest.approx(0.5)  # values 0, returns 1: 0.5 * 1^2 on every token
    for _ in range(15):
        last, _ = _update(critic, llama, cfg, returns, optimizer=opt)
    assert last["value_loss"] < 0.1 * first["value_loss"]


def test_micro_batching_is_exact_and_skipped_rows_are_out(llama):
    grads = []
    for mbs in (1, 4):
        critic = build_critic("tiny:llama", head_init_std=0.1)  # seed 0: the same random head both times
        cfg = CriticConfig(lr=1e-3, micro_batch_size=mbs, max_grad_norm=None)
        returns = [torch.linspace(-1, 1, len(c)) for c in COMPS]
        opt = torch.optim.SGD([p for p in critic.parameters() if p.requires_grad], lr=0.0)
        stats, _ = _update(critic, llama, cfg, returns, optimizer=opt)
        grads.append((stats["value_loss"], critic.value_head.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    # a skipped row contributes nothing: its returns can be anything
    critic = build_critic("tiny:llama", head_init_std=0.1)
    cfg = CriticConfig(micro_batch_size=4, max_grad_norm=None)
    opt = torch.optim.SGD([p for p in critic.parameters() if p.requires_grad], lr=0.0)
    a, _ = _update(
        critic, llama, cfg, [torch.zeros(len(c)) for c in COMPS], optimizer=opt, skipped=[0, 0, 0, 1]
    )
    b, _ = _update(
        critic,
        llama,
        cfg,
        [torch.zeros(len(c)) if j < 3 else torch.full((1,), 50.0) for j, c in enumerate(COMPS)],
        optimizer=opt,
        skipped=[0, 0, 0, 1],
    )
    assert a["value_loss"] == pytest.approx(b["value_loss"])


def test_value_clip_bites_in_the_second_epoch(llama):
    critic = build_critic("tiny:llama")
    cfg = CriticConfig(lr=5e-2, value_clip=0.01, micro_batch_size=4, max_grad_norm=None)
    stats, _ = _update(critic, llama, cfg, [torch.full((len(c),), 5.0) for c in COMPS], epochs=2)
    # epoch 1: values == old values, nothing clipped; epoch 2: moved more than 0.01 towards 5, clipped
    assert 0.0 < stats["value_clip_frac"] <= 0.5 + 1e-6


def test_save_load_is_bitwise_and_resume_continues_identically(llama, tmp_path):
    cfg = CriticConfig(lr=1e-2, micro_batch_size=2)
    returns = [torch.linspace(0, 1, len(c)) for c in COMPS]
    torch.manual_seed(0)
    critic = build_critic("tiny:llama", head_init_std=0.05)
    _, opt = _update(critic, llama, cfg, returns)
    save_critic(critic, tmp_path / "c", opt)
    assert is_critic_folder(tmp_path / "c")
    again = load_critic(tmp_path / "c")
    for (k, a), (k2, b) in zip(critic.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    opt2 = critic_optimizer(again, cfg)
    assert load_critic_optimizer(opt2, tmp_path / "c")
    # one more update on the original and on the reloaded copy: bit-identical weights after it
    _update(critic, llama, cfg, returns, optimizer=opt)
    _update(again, llama, cfg, returns, optimizer=opt2)
    for (k, a), (_, b) in zip(critic.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    # the next stage starts from the saved critic (init_from unset, previous stage's folder given)
    nxt = critic_for_stage(CriticConfig(), "tiny:llama", previous=tmp_path / "c")
    assert torch.equal(nxt.value_head.weight, load_critic(tmp_path / "c").value_head.weight)
    fresh = critic_for_stage(CriticConfig(), "tiny:llama", previous=tmp_path / "nothing")
    assert torch.count_nonzero(fresh.value_head.weight) == 0


def test_lora_critic_trains_adapters_and_head_only(llama, tmp_path):
    critic = build_critic(
        "tiny:llama",
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        head_init_std=0.1,
    )
    trainable = {n for n, p in critic.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    assert "value_head.weight" in trainable
    cfg = CriticConfig(lr=1e-2, micro_batch_size=4)
    _update(critic, llama, cfg, [torch.ones(len(c)) for c in COMPS])
    save_critic(critic, tmp_path / "lora")
    again = load_critic(tmp_path / "lora")
    pad = llama.tokenizer.pad_token_id
    a, _ = critic_values(critic, llama.processor, [TXT] * 4, COMPS, pad, False, "cpu")
    b, _ = critic_values(again, llama.processor, [TXT] * 4, COMPS, pad, False, "cpu")
    assert torch.equal(a, b)


def test_forward_context_wraps_every_critic_forward(llama):
    critic = build_critic("tiny:llama")
    seen = []

    class Ctx:
        def __init__(self, prompts):
            self.n = len(prompts)

        def __enter__(self):
            seen.append(self.n)

        def __exit__(self, *exc):
            return False

    pad = llama.tokenizer.pad_token_id
    values_no_grad(critic, llama.processor, [TXT] * 4, COMPS, pad, 3, False, "cpu", context=Ctx)
    assert seen == [3, 1]
    cfg = CriticConfig(micro_batch_size=2)
    critic_update(
        critic,
        critic_optimizer(critic, cfg),
        llama.processor,
        [TXT] * 4,
        COMPS,
        [torch.zeros(len(c)) for c in COMPS],
        [torch.ones(len(c)) for c in COMPS],
        cfg,
        pad,
        context=Ctx,
    )
    assert seen == [3, 1, 2, 2]


# ---- the trainer's critic (phaserl/stage_critic.py): lr schedule, save / resume / hand-over, LoRA ----------

ROOT = Path(__file__).resolve().parents[1]
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}


def _stage(sets: list[str]):
    from phaserl.config import load_recipe, resolve

    rec = load_recipe(
        ROOT / "recipes/smoke_tiny.yaml",
        [
            "model.name=tiny:llama",
            "algo.advantage=gae",
            "critic.lr=1e-2",
            "critic.micro_batch_size=2",
            "critic.head_init_std=0.05",
            "optim.bf16_autocast=false",
            "stages.0.steps=8",
            *sets,
        ],
    )
    return rec, resolve(rec)[0]


def _trainer_critic(rec, stage, resume=None, init="tiny:llama"):
    from accelerate import Accelerator

    from phaserl.stage_critic import setup_critic

    return setup_critic(
        Accelerator(cpu=True), stage, rec, init, resume, seed=3, dummy_vision=None, steps=stage.steps
    )


def _step(sc, lm, stage, seed=0) -> dict:
    from accelerate import Accelerator

    pad = lm.tokenizer.pad_token_id
    prompts = [TXT, TXT, TXT2, TXT2]
    old = sc.values(lm.processor, prompts, COMPS, pad, False, "cpu")
    returns = [torch.linspace(-1, 1, len(c)) for c in COMPS]
    return sc.update(
        Accelerator(cpu=True),
        lm.processor,
        prompts,
        COMPS,
        old,
        returns,
        pad,
        stage.algo,
        stage.optim,
        seed,
        [False] * 4,
    )


@pytest.mark.parametrize(
    "sets, schedule, warmup",
    [
        (
            ["optim.schedule=cosine", "optim.warmup_ratio=0.25"],
            "cosine",
            0.25,
        ),  # the stage's (policy's) schedule
        (
            ["optim.schedule=cosine", "critic.schedule=linear", "critic.warmup_ratio=0.5"],
            "linear",
            0.5,
        ),  # its own
    ],
)
def test_trainer_critic_lr_follows_the_schedule(llama, sets, schedule, warmup):
    from phaserl.schedule import lr_factor

    rec, stage = _stage(sets)
    sc = _trainer_critic(rec, stage)
    lrs = [_step(sc, llama, stage, seed=s)["critic/lr"] for s in range(stage.steps)]
    want = [1e-2 * lr_factor(s, stage.steps, warmup, schedule) for s in range(stage.steps)]
    assert lrs == pytest.approx(want, rel=1e-6)
    assert len(set(lrs)) > 3  # warms up, then decays


def test_trainer_critic_resumes_bitwise_with_its_scheduler(llama, tmp_path):
    rec, stage = _stage(["optim.schedule=cosine"])
    sc = _trainer_critic(rec, stage)
    for s in range(3):
        _step(sc, llama, stage, seed=s)
    sc.gather()  # what the trainer calls on every rank before rank 0 saves
    sc.save(tmp_path / "ckpt")
    again = _trainer_critic(rec, stage, resume=tmp_path / "ckpt")
    assert again.scheduler.state_dict() == sc.scheduler.state_dict()
    a, b = _step(sc, llama, stage, seed=3), _step(again, llama, stage, seed=3)
    assert a == b  # the same lr, loss and grad norm at the resumed step
    for (k, x), (_, y) in zip(sc.base.state_dict().items(), again.base.state_dict().items()):
        assert torch.equal(x, y), k


def test_lora_from_the_recipe_trains_adapters_and_head_saves_resumes_and_hands_over(llama, tmp_path):
    rec, stage = _stage([f"model.lora={json.dumps(LORA)}"])
    sc = _trainer_critic(rec, stage)
    trainable = {n for n, p in sc.base.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and "value_head.weight" in trainable
    assert all("lora_" in n or n.startswith("value_head") for n in trainable)
    before = {n: p.detach().clone() for n, p in sc.base.named_parameters()}
    for s in range(2):
        _step(sc, llama, stage, seed=s)
    moved = {n for n, p in sc.base.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and moved <= trainable  # the frozen base weights stayed put
    sc.save(tmp_path / "final")
    resumed = _trainer_critic(rec, stage, resume=tmp_path / "final")
    nxt = _trainer_critic(rec, stage, init=str(tmp_path / "final"))  # the next stage starts from final/critic
    for other in (resumed, nxt):
        assert other.base.lora == sc.base.lora and "task_type" not in other.base.lora
        assert {n for n, p in other.base.named_parameters() if p.requires_grad} == trainable
        for (k, x), (_, y) in zip(sc.base.state_dict().items(), other.base.state_dict().items()):
            assert torch.equal(x, y), k
    assert resumed.optimizer.state_dict()["state"]  # moments resumed; a new stage starts a fresh optimizer
    assert not nxt.optimizer.state_dict()["state"]
