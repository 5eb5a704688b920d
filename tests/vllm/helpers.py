"""Shared checks for the vLLM tests."""

import torch

from phaserl.rollout.base import SamplingParams
from phaserl.types import Prompt

QUESTIONS = ["What is 2+3?", "Name a colour.", "Write a haiku about the sea.", "What is the capital of France?"]


def text_prompts(questions=QUESTIONS) -> list[Prompt]:
    return [Prompt(messages=[{"role": "user", "content": q}]) for q in questions]


def hf_greedy(model, lm, prompts, max_new_tokens: int, is_vlm: bool = False):
    """The reference: HFEngine greedy in float32 (no bf16 autocast), one sample per prompt (transformers 5.19
    refuses num_return_sequences > 1 without sampling)."""
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
            f"row {row}: vLLM {out.completion_ids[row]} vs HF {ref.completion_ids[b]}")
        assert out.texts[row] == ref.texts[b]
        assert out.truncated[row] == ref.truncated[b]
        assert out.logp[row].shape == ref.logp[b].shape
        torch.testing.assert_close(out.logp[row], ref.logp[b], atol=logp_atol, rtol=0)


def teacher_forced_logp(model, prompt_ids: list[int], completion_ids: list[int], temperature: float,
                        **vision) -> torch.Tensor:
    """[T] log_softmax(logits / T) of the completion tokens under `model`, the trainer's quantity."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, **vision).logits[0].float()
    P = len(prompt_ids)
    logits = logits[P - 1:P - 1 + len(completion_ids)] / temperature
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion_ids)[:, None]).squeeze(1)
