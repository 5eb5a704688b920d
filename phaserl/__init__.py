"""phaserl: rule-based RL for small vision-language models, staged as a curriculum.

Importing this package is cheap: heavy back ends (vllm, deepspeed, wandb) load only when chosen.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Before torch's first allocation (it reads this once): CPU tensors of 2 MB and more are 2 MB-aligned and in
# transparent huge pages, so a freed block is reused instead of page-faulted in anew every step (see
# phaserl/runtime.py). Only when phaserl is imported before torch, as `phaserl ...` does; PHASERL_THP=0 opts out.
if "torch" not in _sys.modules and _os.environ.get("PHASERL_THP", "1") != "0":
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
