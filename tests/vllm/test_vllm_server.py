"""Server mode on loopback: a `vllm serve` child process, generation over HTTP, weights pushed over HTTP."""

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from helpers import assert_same_as_hf, hf_greedy, text_prompts

from phaserl.rollout.base import SamplingParams

pytestmark = pytest.mark.vllm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"vllm serve did not come up within {timeout}s")


@pytest.fixture(scope="module")
def server(smollm2_path, tmp_path_factory):
    from phaserl.rollout.vllm_server import serve_command

    port = _free_port()
    argv, env = serve_command(smollm2_path, "127.0.0.1", port, dtype="float32", max_model_len=2048,
                              python=sys.executable, extra=["--enforce-eager"])
    log = tmp_path_factory.mktemp("server") / "vllm_serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine child, started above
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_server_generation_and_weight_push_match_hf(server, smollm2_path, smollm2_hf):
    from phaserl.rollout.vllm_server import RpcWeightPush, VLLMServerEngine

    engine = VLLMServerEngine(server, smollm2_path, processor=smollm2_hf.processor,
                              tokenizer=smollm2_hf.tokenizer,
                              weight_push=RpcWeightPush(server, chunk_mb=64, dtype=torch.float32))
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
    assert len(sampled) == 6 and all(len(lp) == len(ids) for lp, ids in zip(sampled.logp,
                                                                             sampled.completion_ids))
    assert engine.generate(prompts[:2], SamplingParams(n=3, max_new_tokens=8, temperature=1.0,
                                                       seed=5)).completion_ids == sampled.completion_ids
    engine.sync_weights(smollm2_hf.model)
    assert engine.generate(prompts, greedy).completion_ids == before.completion_ids
