"""Optional LLM steps through an OpenAI-compatible endpoint the user runs (vLLM, llama.cpp server, ...):
answer extraction (MathVista's and MathVerse's official way) and a 0/1 judge (MathVerse's). Off by default.

Plain `urllib` POST to `{base_url}/chat/completions`, greedy, no SDK. The prompts are ours, written after the
official ones' intent: show the question and the model response, ask for the final answer only (or for 1/0).
Nothing here reads credentials on its own: an API key is used only when the caller passes one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from phaserl.data.render import format_choices
from phaserl.data.schema import Example

EXTRACT_PROMPT = (
    "Below are a math question and a model's response to it. Reply with the final answer that the response "
    "gives and nothing else: for a multiple-choice question the option letter, for a numeric answer just "
    "the number, for a list the Python-style list. If the response gives no answer, reply with nothing.\n\n"
    "Question:\n{question}\n\nModel response:\n{response}\n\nExtracted answer:"
)
JUDGE_PROMPT = (
    "Decide whether a model's extracted answer to a math question is equivalent to the standard answer. "
    "For multiple choice, the option letters must agree. Reply with 1 if equivalent and 0 if not, and "
    "nothing else.\n\nQuestion:\n{question}\n\nStandard answer: {gold}\nModel answer: {pred}\n\nJudgement:"
)
MAX_RESPONSE_CHARS = 12_000  # the end of a long response is kept: that is where answers are


@dataclass
class LLMClient:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    max_tokens: int = 64
    retries: int = 2

    def chat(self, prompt: str) -> str:
        """The assistant text for a single user message (temperature 0)."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        last: Exception | None = None
        for _ in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    data = json.loads(reply.read().decode("utf-8"))
                return str(data["choices"][0]["message"]["content"] or "").strip()
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as e:
                last = e
        raise RuntimeError(f"LLM endpoint {url} (model {self.model}) failed: {last}")


def _question_text(example: Example) -> str:
    if example.choices:
        return f"{example.question}\nChoices:\n{format_choices(example.choices)}"
    return example.question


class LLMExtractor:
    """Extraction by an LLM; `method` names the model so results say how each answer was obtained."""

    def __init__(self, client: LLMClient):
        self.client = client
        self.method = f"llm:{client.model}"

    def __call__(self, response: str, example: Example) -> str | None:
        prompt = EXTRACT_PROMPT.format(question=_question_text(example), response=response[-MAX_RESPONSE_CHARS:])
        answer = self.client.chat(prompt).strip()
        return answer or None


class LLMJudge:
    """A 0/1 equivalence judge by an LLM (MathVerse's official second step)."""

    def __init__(self, client: LLMClient):
        self.client = client
        self.method = f"llm:{client.model}"

    def __call__(self, extraction: str, example: Example) -> bool:
        reply = self.client.chat(JUDGE_PROMPT.format(question=_question_text(example), gold=example.answer,
                                                     pred=extraction))
        return reply.strip().startswith("1")
