"""The CPU fast rollout engine (`rollout.engine: cpu`, or `auto` when the policy is on the CPU).

It samples what the reference engine (rollout/hf.py) samples, faster on a CPU: a bf16 copy whose linear weights
are pre-packed for oneDNN (packed.py), a lean decoding step for Llama-family models (lean.py) whose attention is
one compiled call per layer where the CPU has AVX-512 (kernels.py, decode_attention.cpp), and a sampler that
draws one uniform per row (sampling.py). Greedy tokens equal the reference engine's (tests/rollout/test_engines.py).
"""

from phaserl.rollout.cpu.engine import CPUEngine

__all__ = ["CPUEngine"]
