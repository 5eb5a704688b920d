"""The vLLM engine against the HF reference engine on SmolLM2-135M-Instruct (float32, CPU).

Tolerance: greedy tokens identical; sampling log-probs within 1e-3 of HF's (measured ~3e-5 here)."""

import copy

import pytest
import torch
from helpers import assert_same_as_hf, hf_greedy, teacher_forced_logp, text_prompts

from phaserl.rollout.base import SamplingParams

pytestmark = pytest.mark.vllm


def test_greedy_matches_hf_engine(smollm2_engine, smollm2_hf):
    prompts = text_prompts()
    out = smollm2_engine.generate(prompts, SamplingParams(n=2, max_new_tokens=24, temperature=0))
    ref = hf_greedy(smollm2_hf.model, smollm2_hf, prompts, 24)
    assert_same_as_hf(out, ref, G=2)
    assert any(out.truncated) and not all(out.truncated)  # both endings are exercised
    eos = smollm2_hf.model.generation_config.eos_token_id
    for ids, truncated in zip(out.completion_ids, out.truncated):
        assert (ids[-1] == eos) != truncated  # EOS kept when produced, like the HF engine
        assert truncated == (len(ids) == 24 and ids[-1] != eos)


def test_sampling_logprobs_are_the_trainers_quantity(smollm2_engine, smollm2_hf):
    """Sampled at T=0.7: vLLM's log-probs equal log_softmax(logits / T) recomputed by the HF model."""
    prompts = text_prompts()[:2]
    params = SamplingParams(n=3, max_new_tokens=12, temperature=0.7, seed=123)
    out = smollm2_engine.generate(prompts, params)
    assert len(out) == 6
    for row in range(len(out)):
        ref = teacher_forced_logp(smollm2_hf.model, out.prompt_ids[row], out.completion_ids[row], 0.7)
        torch.testing.assert_close(out.logp[row], ref, atol=1e-3, rtol=0)
        assert out.logp[row].dtype == torch.float32 and (out.logp[row] <= 0).all()
    again = smollm2_engine.generate(prompts, params)
    assert again.completion_ids == out.completion_ids  # a call seed reproduces the samples
    groups = [out.completion_ids[i * 3 : (i + 1) * 3] for i in range(2)]
    assert any(len({tuple(s) for s in g}) > 1 for g in groups)  # samples of a group are distinct streams
    other = smollm2_engine.generate(prompts, SamplingParams(n=3, max_new_tokens=12, temperature=0.7, seed=7))
    assert other.completion_ids != out.completion_ids


def _perturbed(model, scale: float = 0.1):
    """A copy of `model` with every weight moved by scale x its std (a stand-in for an update)."""
    new = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std())
    return new


def test_weight_sync_follows_the_trained_weights(smollm2_engine, smollm2_hf):
    prompts = text_prompts()
    greedy = SamplingParams(n=1, max_new_tokens=16, temperature=0)
    before = smollm2_engine.generate(prompts, greedy)  # also fills the prefix cache with the old weights' KV
    checksum = smollm2_engine.param_checksum()  # vLLM's own layout (repacked on CPU): compared with itself
    new = _perturbed(smollm2_hf.model)
    smollm2_engine.sync_weights(new)
    assert smollm2_engine.param_checksum() != pytest.approx(checksum, rel=1e-6)
    after = smollm2_engine.generate(prompts, greedy)
    assert after.completion_ids != before.completion_ids  # the update is visible...
    assert_same_as_hf(after, hf_greedy(new, smollm2_hf, prompts, 16), G=1)  # ...and exactly the new model's
    smollm2_engine.sync_weights(smollm2_hf.model)  # back: later tests see the original weights
    restored = smollm2_engine.generate(prompts, greedy)
    assert restored.completion_ids == before.completion_ids
    assert smollm2_engine.param_checksum() == pytest.approx(checksum, rel=1e-9)


def test_sync_through_a_lora_wrapper(smollm2_engine, smollm2_hf):
    """A PEFT policy syncs as its merged weights, under the base model's names."""
    from peft import LoraConfig, get_peft_model

    prompts = text_prompts()[:2]
    greedy = SamplingParams(n=1, max_new_tokens=12, temperature=0)
    base = copy.deepcopy(smollm2_hf.model)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    smollm2_engine.sync_weights(peft_model)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    out = smollm2_engine.generate(prompts, greedy)
    assert_same_as_hf(out, hf_greedy(merged, smollm2_hf, prompts, 12), G=1)
    plain = hf_greedy(smollm2_hf.model, smollm2_hf, prompts, 12)  # the adapters did change the policy
    assert out.completion_ids != plain.completion_ids or any(
        (a - b).abs().max() > 1e-2 for a, b in zip(out.logp, plain.logp) if a.shape == b.shape
    )
    # the adapters were unmerged again: the trainer's LoRA model is unchanged by the sync
    assert not torch.equal(
        peft_model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight,
        merged.model.layers[0].self_attn.q_proj.weight,
    )
    smollm2_engine.sync_weights(smollm2_hf.model)
