"""Scripted engines for tests: completions where only the texts matter, and an engine that answers the eval
fixtures' questions from a script (ScriptedEngine, ANSWERS)."""

import torch

from phaserl.types import Completions


def completions_of(texts: list[str]) -> Completions:
    """Completions holding `texts`, one row each (a one-token prompt and completion, not truncated)."""
    n = len(texts)
    return Completions(
        prompt_ids=[[0]] * n,
        completion_ids=[[0]] * n,
        texts=list(texts),
        logp=[torch.zeros(1)] * n,
        truncated=[False] * n,
    )


class ScriptedEngine:
    """Answers each prompt with the next scripted text (per sample); records what it was asked."""

    def __init__(self, answers: dict[str, list[str]], is_vlm: bool = True):
        self.answers, self.is_vlm, self.calls = answers, is_vlm, []

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        texts = []
        for p in prompts:
            user = p.messages[-1]["content"]
            text = user if isinstance(user, str) else user[-1]["text"]
            key = next(k for k in self.answers if k in text)
            texts += [self.answers[key][s % len(self.answers[key])] for s in range(params.n)]
        n = len(texts)
        return Completions(
            prompt_ids=[[1]] * n,
            completion_ids=[[2, 3]] * n,
            texts=texts,
            logp=[torch.zeros(2)] * n,
            truncated=[False] * n,
        )

    def sync_weights(self, model):
        pass


ANSWERS = {  # keyed by a phrase of each fixture question; gold in the comment
    "different digits": ["So \\boxed{6}.", "It is \\boxed{5}."],  # 6
    "last daisy": ["\\boxed{61}"],  # 61
    "Misty the cat": ["It must be picture D."],  # D (no box: the format fails, the official rules read " D.")
    "Ingrid has": ["\\boxed{red}"],  # A = red
    "Gerda walks": ["\\boxed{B}"],  # A
    "inscribed semicircle": ["\\boxed{4.8}"],  # 4.8
    "hamburgers": ["\\boxed{3}"],  # 2.5
    "reflected in the": ["\\boxed{(3,-4)}"],  # (3,-4)
}
