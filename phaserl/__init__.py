"""phaserl: rule-based RL for small vision-language models, staged as a curriculum.

Importing this package is cheap: heavy back ends (vllm, deepspeed, wandb) load only when chosen.
"""

__version__ = "0.1.0"
