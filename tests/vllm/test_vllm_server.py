"""Server mode on loopback: a `vllm serve` child process, generation over HTTP, weights pushed over HTTP."""

import copy

import pytest
import torch
from helpers import assert_same_as_hf, hf_greedy, text_prompts, vllm_server

from phaserl.rollout.base import SamplingParams

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def server(smollm2_path, tmp_path_factory):
    with vllm_server(smollm2_path, tmp_path_factory.mktemp("server") / "vllm_serve.log") as url:
        yield url


def test_server_generation_and_weight_push_match_hf(server, smollm2_path, smollm2_hf):
    from phaserl.rollout.vllm_server import RpcWeightPush, VLLMServerEngine

    engine = VLLMServerEngine(
        server,
        smollm2_path,
        processor=smollm2_hf.processor,
        tokenizer=smollm2_hf.tokenizer,
        weight_push=RpcWeightPush(server, chunk_mb=64, dtype=torch.float32),
    )
    prompts = text_prompts()
    greedy = SamplingParams(n=2, max_new_tokens=16, temperature=0)
    before = engine.generate(prompts, greedy)
    ref = hf_greedy(smollm2_hf.model, smollm2_hf, prompts, 16)
    assert_same_as_hf(before, ref, G=2)

    new = copy.deepcopy(smollm2_hf.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1 * p.std())
    engine.sync_weights(new)  # several 64 MB chunks over HTTP, then the prefix cache is reset
    after = engine.generate(prompts, greedy)
    assert after.completion_ids != before.completion_ids
    assert_same_as_hf(after, hf_greedy(new, smollm2_hf, prompts, 16), G=2)

    sampled = engine.generate(prompts[:2], SamplingParams(n=3, max_new_tokens=8, temperature=1.0, seed=5))
    assert len(sampled) == 6 and all(
        len(lp) == len(ids) for lp, ids in zip(sampled.logp, sampled.completion_ids)
    )
    assert (
        engine.generate(
            prompts[:2], SamplingParams(n=3, max_new_tokens=8, temperature=1.0, seed=5)
        ).completion_ids
        == sampled.completion_ids
    )
    engine.sync_weights(smollm2_hf.model)
    assert engine.generate(prompts, greedy).completion_ids == before.completion_ids
