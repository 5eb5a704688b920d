"""Shared checks for the vLLM tests, and a `vllm serve` child process on loopback."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from phaserl.rollout.base import SamplingParams
from phaserl.types import Prompt

QUESTIONS = [
    "What is 2+3?",
    "Name a colour.",
    "Write a haiku about the sea.",
    "What is the capital of France?",
]


def text_prompts(questions=QUESTIONS) -> list[Prompt]:
    return [Prompt(messages=[{"role": "user", "content": q}]) for q in questions]


def hf_greedy(model, lm, prompts, max_new_tokens: int, is_vlm: bool = False):
    """The reference: the plain engine (rollout/hf.py's HFEngine, not the CPU engine) greedy in float32 (no bf16
    autocast), one sample per prompt (transformers 5.19 refuses num_return_sequences > 1 without sampling)."""
    from phaserl.rollout.hf import HFEngine

    hf = HFEngine(model, lm.processor, lm.tokenizer, is_vlm=is_vlm, autocast_bf16=False)
    return hf.generate(prompts, SamplingParams(n=1, max_new_tokens=max_new_tokens, temperature=0))


def assert_same_as_hf(out, ref, G: int, logp_atol: float = 1e-3) -> None:
    """Identical prompt and completion tokens, texts and truncation; log-probs within logp_atol."""
    assert len(out) == len(ref) * G
    for row in range(len(out)):
        b = row // G
        assert out.prompt_ids[row] == ref.prompt_ids[b], f"row {row}: prompt tokens differ"
        assert out.completion_ids[row] == ref.completion_ids[b], (
            f"row {row}: vLLM {out.completion_ids[row]} vs HF {ref.completion_ids[b]}"
        )
        assert out.texts[row] == ref.texts[b]
        assert out.truncated[row] == ref.truncated[b]
        assert out.logp[row].shape == ref.logp[b].shape
        torch.testing.assert_close(out.logp[row], ref.logp[b], atol=logp_atol, rtol=0)


def teacher_forced_logp(
    model, prompt_ids: list[int], completion_ids: list[int], temperature: float, **vision
) -> torch.Tensor:
    """[T] log_softmax(logits / T) of the completion tokens under `model`, the trainer's quantity."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, **vision).logits[0].float()
    P = len(prompt_ids)
    logits = logits[P - 1 : P - 1 + len(completion_ids)] / temperature
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion_ids)[:, None]).squeeze(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc, timeout: float = 600) -> None:
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


@contextlib.contextmanager
def vllm_server(model_path: str, log: Path, extra: list[str] | None = None):
    """`http://127.0.0.1:PORT` of a vLLM OpenAI-compatible server for model_path (float32, eager), stopped
    (its whole process group) on exit; its output goes to `log`."""
    from phaserl.rollout.vllm_server import serve_command

    port = free_port()
    argv, env = serve_command(
        model_path,
        "127.0.0.1",
        port,
        dtype="float32",
        max_model_len=2048,
        python=sys.executable,
        extra=["--enforce-eager", *(extra or [])],
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine child, started above
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
