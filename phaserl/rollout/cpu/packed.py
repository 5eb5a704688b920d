"""Linear layers of the CPU sampling copy with their weights pre-packed for oneDNN.

A bf16 `F.linear` on the CPU hands oneDNN a plain row-major weight, which it re-lays into its blocked format
on every call: for the few-row products of a decoding step (32 rows x 576 x 576 in SmolLM2) that reordering
costs more than the product. Packing each weight once per weight sync (`torch.ops.mkldnn._reorder_linear_weight`,
the layout torch.compile's CPU backend also packs to) and calling `_linear_pointwise` gives bit-identical
outputs faster for few-row products (tests/rollout/test_speed_packed.py checks the bits; the sampling copy's matmuls are a
large share of a decoding step). Inference only: packed weights have no autograd and cannot be deep-copied or saved, so only
the rollout copy (never the trained model) is packed, and `repack` refreshes it from the trained weights.
"""

from __future__ import annotations

import torch


def packing_available(dtype: torch.dtype, device) -> bool:
    """oneDNN bf16 linear on this CPU (AVX512-BF16/AMX or an emulation oneDNN accepts)."""
    if (
        dtype != torch.bfloat16
        or torch.device(device).type != "cpu"
        or not torch.backends.mkldnn.is_available()
    ):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PackedLinear(torch.nn.Module):
    """y = x W^T + b with W held in oneDNN's blocked layout (bf16); the bias stays a parameter."""

    ROWS_HINT = 32  # the layout's batch-size hint; any row count is computed correctly

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias
        self.packed = None
        self.pack(linear.weight)

    @torch.no_grad()
    def pack(self, weight: torch.Tensor) -> None:
        w = weight.detach().to(torch.bfloat16).contiguous()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w, self.ROWS_HINT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def pack_linears(model: torch.nn.Module) -> list[str]:
    """Replace every plain nn.Linear of a bf16 inference model by a PackedLinear, in place; returns their names.
    Tied weights (an lm_head sharing the embedding) get a packed copy; the embedding keeps its own tensor."""
    names = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype == torch.bfloat16:
                setattr(module, child_name, PackedLinear(child))
                names.append(f"{name}.{child_name}" if name else child_name)
    return names


@torch.no_grad()
def repack(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Refresh every PackedLinear of `model` from `source` (name -> weight, tied names included)."""
    for name, module in model.named_modules():
        if isinstance(module, PackedLinear):
            module.pack(source[f"{name}.weight"])
