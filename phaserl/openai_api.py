"""A small client for OpenAI-compatible `/v1/chat/completions` servers (vLLM, SGLang, llama.cpp, hosted APIs),
shared by `phaserl data caption --backend openai` and the LLM extraction/judge of `phaserl score`/`eval`.

Plain urllib, no SDK. Requests are retried with exponential backoff on what a busy or restarting server
answers (429, 5xx, refused or reset connections, timeouts), honouring Retry-After; other 4xx answers are the
caller's mistake and fail at once with the server's message. `map_concurrent` runs many requests on a thread
pool with a bounded number in flight, yielding results as they complete.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class APIError(RuntimeError):
    """A request that failed for good (after retries, or at once for a client error)."""


def api_key_from_env(name: str | None) -> str | None:
    """The key in environment variable `name` (None when no name is given); a named but unset variable is an
    error, so a typo does not silently send unauthenticated requests."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ValueError(
            f"environment variable {name} (named by --api-key-env / --llm-api-key-env) is not set"
        )
    return value


def chat_url(base_url: str) -> str:
    """`http://host:8000` or `http://host:8000/v1` -> `http://host:8000/v1/chat/completions`."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if urllib.parse.urlparse(base).path in ("", "/"):
        base += "/v1"
    return base + "/chat/completions"


@dataclass
class ChatClient:
    base_url: str  # the server's OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout: float = 120.0  # seconds per request
    retries: int = 4  # further attempts after the first
    backoff: float = 1.0  # seconds before the first retry, doubled each time (capped at 30)
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None

    def body(self, messages: list[dict]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def complete(self, messages: list[dict]) -> str:
        """The assistant text for one chat request."""
        data = self.post(self.body(messages))
        try:
            return str(data["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            raise APIError(f"{chat_url(self.base_url)}: unexpected reply {str(data)[:300]}") from None

    def post(self, body: dict) -> dict:
        url = chat_url(self.base_url)
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay, last = self.backoff, ""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            wait_s = delay
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.loads(reply.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                text = e.read().decode("utf-8", "replace")[:500]
                last = f"HTTP {e.code}: {text}"
                if e.code not in RETRY_STATUS:
                    raise APIError(f"{url} (model {self.model}): {last}") from None
                wait_s = _retry_after(e.headers.get("Retry-After"), delay)
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.retries:
                time.sleep(wait_s * (1 + 0.1 * random.random()))
                delay = min(delay * 2, 30.0)
        raise APIError(f"{url} (model {self.model}) failed after {self.retries + 1} attempts: {last}")


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(max(float(header), 0.0), 60.0) if header else default
    except ValueError:
        return default


def map_concurrent(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 8
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """(item, result, error) for every item, in completion order, with at most 2 x workers submitted at once
    (so a long list of image requests is not encoded all up front)."""
    it = iter(items)
    window = max(1, 2 * workers)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        running: dict[Future, Any] = {}

        def fill() -> None:
            while len(running) < window:
                try:
                    item = next(it)
                except StopIteration:
                    return
                running[pool.submit(fn, item)] = item

        fill()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                yield item, (None if error else future.result()), error
            fill()
