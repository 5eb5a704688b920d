"""Methods phaserl adds to every vLLM worker (`worker_extension_cls`): load weights pushed by the trainer.

vLLM imports this class by name inside its worker processes and mixes it into the worker, so the methods
run where the model lives and are called with `collective_rpc("phaserl_...")`, in process (colocated mode)
or over HTTP (server mode, `/collective_rpc`). Keep this module free of phaserl imports: a vLLM server
process loads it without the rest of the package.

Wire format over HTTP: base64 of a safetensors blob (never pickle: the server must not run the sender's code).
"""

from __future__ import annotations

import base64

import torch


def pack_weights(weights: list[tuple[str, torch.Tensor]]) -> bytes:
    """A safetensors blob of named tensors: the one format that crosses a process boundary here."""
    from safetensors.torch import save

    return save({name: t.detach().contiguous().cpu() for name, t in weights})


def unpack_weights(blob: bytes) -> list[tuple[str, torch.Tensor]]:
    from safetensors.torch import load

    return list(load(blob).items())


def encode_weights(weights: list[tuple[str, torch.Tensor]]) -> str:
    """base64 of `pack_weights`, for JSON bodies (`/collective_rpc` passes strings only)."""
    return base64.b64encode(pack_weights(weights)).decode("ascii")


def _reprocess_tied_heads(model) -> None:
    """A tied LM head receives no checkpoint weight (its tensor is the embedding's), so vLLM's reload skips its
    post-load processing, and the CPU backend's GEMM keeps a packed copy of the *old* embedding. Redo it."""
    embeddings = {
        m.weight.data_ptr()
        for m in model.modules()
        if type(m).__name__ == "VocabParallelEmbedding" and getattr(m, "weight", None) is not None
    }
    for module in model.modules():
        weight = getattr(module, "weight", None)
        method = getattr(module, "quant_method", None)
        if (
            type(module).__name__ == "ParallelLMHead"
            and weight is not None
            and method is not None
            and weight.data_ptr() in embeddings
        ):
            method.process_weights_after_loading(module)


class PhaserlWorkerExtension:
    """Mixed into vLLM's worker class; `self.model_runner.model` is vLLM's model.

    An update is a session, like vLLM's own weight-transfer API: start, any number of chunks (bounded
    memory on the wire), finish. vLLM's in-place reload machinery restores the checkpoint-format loaders
    that its post-load processing (e.g. the CPU backend's weight repacking) removed, and re-runs that
    processing per layer once the layer's weights have all arrived."""

    def phaserl_start_update(self) -> None:
        from vllm.model_executor.model_loader.reload.layerwise import initialize_layerwise_reload

        with self._phaserl_config():
            initialize_layerwise_reload(self.model_runner.get_model())
        self._phaserl_loaded = 0

    def phaserl_update_chunk(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        """Copy HF-named tensors into vLLM's model (vLLM's `load_weights` fuses qkv / gate_up itself)."""
        with self._phaserl_config():
            self.model_runner.get_model().load_weights(weights)
        self._phaserl_loaded = getattr(self, "_phaserl_loaded", 0) + len(weights)
        return len(weights)

    def phaserl_update_chunk_bytes(self, blob: bytes) -> int:
        """The same from a safetensors blob (the engine runs in another process: tensors travel as bytes)."""
        return self.phaserl_update_chunk(unpack_weights(blob))

    def phaserl_update_chunk_b64(self, payload: str) -> int:
        return self.phaserl_update_chunk(unpack_weights(base64.b64decode(payload)))

    def phaserl_finish_update(self) -> int:
        """Finish processing, drop caches computed with the old weights (vision encoder outputs)."""
        from vllm.model_executor.model_loader.reload.layerwise import finalize_layerwise_reload

        model = self.model_runner.get_model()
        with self._phaserl_config():
            finalize_layerwise_reload(model, self.vllm_config.model_config)
            _reprocess_tied_heads(model)
        for reset in ("reset_encoder_cache", "reset_mm_cache"):
            if hasattr(self.model_runner, reset):
                getattr(self.model_runner, reset)()
        return getattr(self, "_phaserl_loaded", 0)

    def phaserl_param_checksum(self) -> float:
        """Sum of all parameters as float64: lets a test see that a push reached the worker."""
        with torch.no_grad():
            return float(sum(p.double().sum() for p in self.model_runner.get_model().parameters()))

    def _phaserl_config(self):
        from vllm.config import set_current_vllm_config

        return set_current_vllm_config(self.vllm_config)
