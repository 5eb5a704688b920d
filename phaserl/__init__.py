"""phaserl: rule-based RL for small vision-language models, staged as a curriculum.

Importing this package is cheap and changes no process setting: heavy back ends (vllm, deepspeed, wandb) load
only when chosen, and the CPU engine's allocator settings (phaserl/runtime.py) apply only when it is used.
"""

__version__ = "0.1.0"
