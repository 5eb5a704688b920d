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


def encode_weights(weights: list[tuple[str, torch.Tensor]]) -> str:
    """base64(safetensors) of a list of named tensors, for `phaserl_load_weights_b64`."""
    from safetensors.torch import save

    blob = save({name: t.detach().contiguous().cpu() for name, t in weights})
    return base64.b64encode(blob).decode("ascii")


def decode_weights(payload: str) -> list[tuple[str, torch.Tensor]]:
    from safetensors.torch import load

    return list(load(base64.b64decode(payload)).items())


class PhaserlWorkerExtension:
    """Mixed into vLLM's worker class; `self.model_runner.model` is vLLM's model."""

    def phaserl_load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        """Copy HF-named tensors into vLLM's model (vLLM's own `load_weights` fuses qkv / gate_up)."""
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)

    def phaserl_load_weights_b64(self, payload: str) -> int:
        return self.phaserl_load_weights(decode_weights(payload))

    def phaserl_param_checksum(self) -> float:
        """Sum of all parameters as float64: lets a test see that a push reached the worker."""
        with torch.no_grad():
            return float(sum(p.double().sum() for p in self.model_runner.model.parameters()))
