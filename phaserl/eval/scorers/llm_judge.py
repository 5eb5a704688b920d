"""Optional LLM steps through an OpenAI-compatible endpoint the user runs (vLLM, SGLang, llama.cpp server, a
hosted API): answer extraction (MathVista's and MathVerse's official way) and a 0/1 judge (MathVerse's). Off
by default.

Requests go through phaserl.openai_api (urllib, no SDK; retried with backoff on 429/5xx/timeouts), greedy.
`prefetch` sends a whole benchmark's prompts concurrently; every reply is appended to a JSONL cache keyed by
a hash of (model, prompt, max_tokens), so a rerun, or a run killed half-way, asks only for what it has not got.
The prompts are ours, written after the official ones' intent: show the question and the model response, ask
for the final answer only (or for 1/0). Nothing here reads credentials on its own: an API key is used only
when the caller passes one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from phaserl.data.render import format_choices
from phaserl.data.schema import Example
from phaserl.openai_api import APIError, ChatClient, map_concurrent

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
class LLMClient(ChatClient):
    """A ChatClient with the judge's defaults: short greedy replies, a minute per request."""

    timeout: float = 60.0
    max_tokens: int = 64
    retries: int = 2

    def chat(self, prompt: str) -> str:
        """The assistant text for a single user message (temperature 0)."""
        return self.complete([{"role": "user", "content": prompt}])


def default_cache_path() -> Path:
    from phaserl.models import cache_dir

    return cache_dir() / "llm_cache.jsonl"


class LLMCache:
    """Replies by key in a JSONL file; each new reply is appended and flushed as it arrives."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.replies: dict[str, str] = {}
        self.lock = threading.Lock()
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a torn last line of a killed run
                    continue
                self.replies[row["key"]] = row["reply"]

    @staticmethod
    def key(client: ChatClient, prompt: str) -> str:
        return hashlib.sha256(json.dumps([client.model, prompt, client.max_tokens]).encode()).hexdigest()[:32]

    def get(self, key: str) -> str | None:
        return self.replies.get(key)

    def put(self, key: str, model: str, reply: str) -> None:
        with self.lock:
            self.replies[key] = reply
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(
                        json.dumps({"key": key, "model": model, "reply": reply}, ensure_ascii=False) + "\n"
                    )


class LLMAsker:
    """One client + one cache, shared by the extractor and the judge, counting requests and cache hits."""

    def __init__(self, client: ChatClient, cache: LLMCache | None = None, concurrency: int = 8):
        self.client, self.concurrency = client, concurrency
        self.cache = cache if cache is not None else LLMCache(None)
        self.requests = self.cache_hits = 0
        self.lock = threading.Lock()

    def _request(self, prompt: str) -> str:
        reply = self.client.complete([{"role": "user", "content": prompt}])
        self.cache.put(LLMCache.key(self.client, prompt), self.client.model, reply)
        with self.lock:
            self.requests += 1
        return reply

    def ask(self, prompt: str) -> str:
        cached = self.cache.get(LLMCache.key(self.client, prompt))
        if cached is not None:
            with self.lock:
                self.cache_hits += 1
            return cached
        return self._request(prompt)

    def prefetch(self, prompts: list[str]) -> None:
        """Send every prompt not yet cached, `concurrency` at a time; failures are raised together at the end
        (what did come back is cached, so a rerun asks only for the rest)."""
        missing = list(
            dict.fromkeys(p for p in prompts if self.cache.get(LLMCache.key(self.client, p)) is None)
        )
        errors = [e for _, _, e in map_concurrent(self._request, missing, self.concurrency) if e is not None]
        if errors:
            raise APIError(
                f"{len(errors)} of {len(missing)} LLM requests failed; rerun to retry them "
                f"(the others are cached). First: {errors[0]}"
            )

    def describe(self) -> dict:
        return {
            "model": self.client.model,
            "base_url": self.client.base_url,
            "max_tokens": self.client.max_tokens,
            "temperature": self.client.temperature,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "cache": str(self.cache.path) if self.cache.path else None,
        }


def _asker(client_or_asker) -> LLMAsker:
    return client_or_asker if isinstance(client_or_asker, LLMAsker) else LLMAsker(client_or_asker)


def _question_text(example: Example) -> str:
    if example.choices:
        return f"{example.question}\nChoices:\n{format_choices(example.choices)}"
    return example.question


class LLMExtractor:
    """Extraction by an LLM; `method` names the model so results say how each answer was obtained."""

    prompt = EXTRACT_PROMPT

    def __init__(self, client: ChatClient | LLMAsker):
        self.asker = _asker(client)
        self.method = f"llm:{self.asker.client.model}"

    def build(self, response: str, example: Example) -> str:
        return self.prompt.format(question=_question_text(example), response=response[-MAX_RESPONSE_CHARS:])

    def prefetch(self, responses: list[str], examples: list[Example]) -> None:
        self.asker.prefetch([self.build(r, e) for r, e in zip(responses, examples)])

    def peek(self, response: str, example: Example) -> str | None:
        """The cached extraction, without counting a cache hit (None when not asked yet or empty)."""
        reply = self.asker.cache.get(LLMCache.key(self.asker.client, self.build(response, example)))
        return (reply or "").strip() or None

    def __call__(self, response: str, example: Example) -> str | None:
        answer = self.asker.ask(self.build(response, example)).strip()
        return answer or None


class LLMJudge:
    """A 0/1 equivalence judge by an LLM (MathVerse's official second step)."""

    prompt = JUDGE_PROMPT

    def __init__(self, client: ChatClient | LLMAsker):
        self.asker = _asker(client)
        self.method = f"llm:{self.asker.client.model}"

    def build(self, extraction: str, example: Example) -> str:
        return self.prompt.format(question=_question_text(example), gold=example.answer, pred=extraction)

    def prefetch(self, pairs: list[tuple[str, Example]]) -> None:
        self.asker.prefetch([self.build(p, e) for p, e in pairs])

    def __call__(self, extraction: str, example: Example) -> bool:
        return self.asker.ask(self.build(extraction, example)).strip().startswith("1")
