"""Skipping rows with advantage 0 changes nothing that is learned: same weights, same optimizer state."""

import contextlib
import copy

import pytest
import torch
from accelerate import Accelerator

import phaserl.policy as policy_module
import phaserl.update as update
import phaserl.update_speed as update_speed
from phaserl.config import AlgoConfig, OptimConfig
from phaserl.data.generators import arithmetic
from phaserl.data.render import render
from phaserl.models import load_model
from phaserl.policy import Policy
from phaserl.update import UpdateInputs, update_policy


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return load_model("tiny:llama")


def _policy(lm, model, autocast: bool) -> Policy:
    return Policy(
        model=model,
        processor=lm.processor,
        is_vlm=False,
        pad_id=lm.tokenizer.pad_token_id,
        temperature=1.0,
        autocast=autocast,
        device="cpu",
    )


def _inputs(adv: list[float]) -> UpdateInputs:
    prompts = [render(e, "text") for e in arithmetic(n=2, seed=3, digits=2)]
    rows = [p for p in prompts for _ in range(4)]  # B=2, G=4
    gen = torch.Generator().manual_seed(0)
    comps = [
        torch.randint(0, 1000, (int(torch.randint(2, 9, (), generator=gen)),), generator=gen).tolist()
        for _ in rows
    ]
    return UpdateInputs(prompts=rows, completion_ids=comps, adv=torch.tensor(adv), truncated=[False] * 8)


def _train(lm, advs: list[list[float]], skip: bool, aggregation: str, monkeypatch) -> tuple:
    monkeypatch.setattr(update_speed, "SKIP_ZERO_ADV", skip)
    model = copy.deepcopy(lm.model).train()
    # eps 1e-3: Adam divides by sqrt(v), which turns float rounding left where gradients cancel (~1e-10, and
    # different micro-batch layouts round differently) into visible steps; eps keeps the comparison on the math
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    algo = AlgoConfig(micro_batch_size=3, aggregation=aggregation)
    optim = OptimConfig(bf16_autocast=False, max_grad_norm=1.0)
    stats = [
        update_policy(
            Accelerator(cpu=True),
            _policy(lm, model, False),
            opt,
            sched,
            _inputs(a),
            algo,
            optim,
            16.0 if aggregation == "constant" else None,
            seed=0,
        )
        for a in advs
    ]
    return model, opt, stats


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean", "constant"])
def test_skipping_zero_advantage_rows_gives_the_same_update(lm, aggregation, monkeypatch):
    # group 1 all equal rewards (advantage 0), group 2 informative; then a step with no informative row,
    # where AdamW's momentum must still move the weights
    advs = [[0.0, 0.0, 0.0, 0.0, 1.2, -0.4, 0.0, -0.8], [0.0] * 8]
    ref, ref_opt, ref_stats = _train(lm, advs, False, aggregation, monkeypatch)
    got, opt, stats = _train(lm, advs, True, aggregation, monkeypatch)
    start = dict(lm.model.named_parameters())
    moved = 0
    for (name, p), q in zip(ref.named_parameters(), got.parameters()):
        step = float(
            (p - start[name]).abs().max()
        )  # ~1e-2 (lr); a wrong weight on any row would show at that scale
        assert float((p - q).abs().max()) <= 1e-3 * step, name
        moved += step > 0
    assert moved == len(start)  # every tensor was updated, in both steps' worth of AdamW state
    assert len(opt.state) == len(ref_opt.state) == len(start)
    for a, b in zip(ref_stats, stats):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4, abs=1e-8)


def test_rows_with_gradient_keeps_everything_when_kl_is_in_the_loss():
    inp = _inputs([0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    assert update_speed.rows_with_gradient(inp, list(range(8)), AlgoConfig(), world=1) == [1, 3]
    inp.ref_logp = [torch.zeros(len(c)) for c in inp.completion_ids]
    assert update_speed.rows_with_gradient(inp, list(range(8)), AlgoConfig(kl_coef=0.1), world=1) == list(
        range(8)
    )
    assert update_speed.rows_with_gradient(inp, [0, 1], AlgoConfig(kl_coef=0.1, kl_in="reward"), world=1) == [
        1
    ]
    assert update_speed.rows_with_gradient(inp, [0, 1], AlgoConfig(), world=2) == [
        0,
        1,
    ]  # ranks stay in lockstep


def test_bf16_weight_cast_cache_changes_nothing(lm, monkeypatch):
    """Casting each weight once per optimizer step (one autocast region over the micro-batches) gives the same
    weights (to float32 rounding) as casting per micro-batch, over two steps with 2 mini-batches each: a cast kept past an
    optimizer step would use stale weights and show here."""

    def train(cache: bool):
        if not cache:
            monkeypatch.setattr(update, "weight_cast_cache", lambda *a: contextlib.nullcontext())
        model = copy.deepcopy(lm.model).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        algo, optim = AlgoConfig(micro_batch_size=2, mini_batches=2), OptimConfig(bf16_autocast=True)
        for a in ([1.0, -1.0, 0.5, -0.5, 1.2, -0.4, 0.3, -0.8], [0.7, -0.7, 0.2, -0.2, 1.0, -1.0, 0.0, 0.0]):
            update_policy(
                Accelerator(cpu=True),
                _policy(lm, model, True),
                opt,
                sched,
                _inputs(a),
                algo,
                optim,
                None,
                seed=0,
            )
        monkeypatch.undo()
        return model

    cached, plain = train(True), train(False)
    start = dict(lm.model.named_parameters())
    for (name, p), q in zip(plain.named_parameters(), cached.parameters()):
        assert float((p - start[name]).abs().max()) > 0, name
        # equal up to float32 rounding (the tied embedding sums its two gradients in a different order, ~2e-9);
        # a stale cast would be off by the size of a step (~1e-2 here)
        assert torch.allclose(p, q, rtol=0, atol=1e-7), (name, float((p - q).abs().max()))


def test_no_weight_cast_cache_when_parameters_are_sharded():
    class Acc:
        device = torch.device("cpu")
        distributed_type = "FSDP"

    assert isinstance(update_speed.weight_cast_cache(Acc(), True), contextlib.nullcontext)
    Acc.distributed_type = "NO"
    assert isinstance(update_speed.weight_cast_cache(Acc(), True), torch.autocast)
    assert isinstance(update_speed.weight_cast_cache(Acc(), False), contextlib.nullcontext)


def test_memory_probe_changes_nothing_that_is_learned(lm):
    """The probe (one forward/backward, optimizer state from an lr-0 step, its counters reset) leaves weights and
    fresh-state semantics intact: two updates after it give bit for bit the weights and moments of two updates
    without it."""
    prompt = _inputs([0.0] * 8).prompts[0]

    def train(probe: bool):
        model = copy.deepcopy(lm.model).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        algo, optim = AlgoConfig(micro_batch_size=3), OptimConfig(bf16_autocast=True)
        acc = Accelerator(cpu=True)
        if probe:
            before = [p.detach().clone() for p in model.parameters()]
            update_speed.memory_probe(
                acc, _policy(lm, model, True), opt, prompt, algo, optim, max_new_tokens=7, samples_per_step=8
            )
            assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
            assert all(p.grad is None for p in model.parameters())
            assert len(opt.state) == len(before) and all(float(s["step"]) == 0 for s in opt.state.values())
        for a in ([1.0, -1.0, 0.5, -0.5, 1.2, -0.4, 0.3, -0.8], [0.7, -0.7, 0.2, -0.2, 1.0, -1.0, 0.0, 0.0]):
            update_policy(acc, _policy(lm, model, True), opt, sched, _inputs(a), algo, optim, None, seed=0)
        return model, opt

    (m1, o1), (m2, o2) = train(True), train(False)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(o1.state[p]["exp_avg"], o2.state[q]["exp_avg"])
        assert float(o1.state[p]["step"]) == float(o2.state[q]["step"]) == 2


@pytest.mark.parametrize("samples,mini_batches,passes", [(8, 1, 2), (3, 1, 1), (6, 2, 1), (12, 2, 2)])
def test_memory_probe_reaches_the_second_micro_batch_peak(lm, monkeypatch, samples, mini_batches, passes):
    """An optimizer step of several micro-batches peaks in its second one (optimizer state, accumulated gradients
    and activations all live): the probe runs a second forward/backward there, with the state allocated and the
    first pass's gradients still held; an optimizer step of one micro-batch (micro-batches of 3 rows here) gets one
    pass."""
    model = copy.deepcopy(lm.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    seen = []
    real = policy_module.rows_logp

    def spy(*args, **kwargs):
        seen.append((len(opt.state), sum(p.grad is not None for p in model.parameters())))
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_module, "rows_logp", spy)
    prompt = _inputs([0.0] * 8).prompts[0]
    algo = AlgoConfig(micro_batch_size=3, mini_batches=mini_batches)
    ran = update_speed.memory_probe(
        Accelerator(cpu=True),
        _policy(lm, model, True),
        opt,
        prompt,
        algo,
        OptimConfig(bf16_autocast=True),
        max_new_tokens=5,
        samples_per_step=samples,
    )
    assert ran == (min(3, samples // mini_batches), passes)
    n = len(list(model.parameters()))
    assert seen[:1] == [(0, 0)]
    assert seen[1:] == ([(n, n)] if passes == 2 else [])
    assert all(p.grad is None for p in model.parameters()) and len(opt.state) == n
