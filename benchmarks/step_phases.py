"""Where a phaserl step's time goes: wall, user and kernel seconds and page faults of each phase.

Runs phaserl alone on the speed benchmark's work (grpo_vs_trl.py's recipe: SmolLM2-135M-Instruct, 4 prompts x 8
samples, 64 new tokens, micro-batches of 8) and prints one line per phase as it ends: the memory probe, each
generation, each micro-batch's forward and backward, gradient clipping and the optimizer step. Kernel time with many
page faults means memory the allocator had to fault in anew (see phaserl/runtime.py); user time near twice the
wall time means both cores were busy.

    .venv/bin/python benchmarks/step_phases.py [--steps 3] [--case text|vlm]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from phaserl.runtime import prepare_cpu_engine

prepare_cpu_engine()  # the CPU engine's allocator settings, before any tensor (as `phaserl train` on a CPU)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpo_vs_trl as bench  # noqa: E402


def timed(name: str, fn):
    """fn, printing the phase's wall / user / kernel seconds and minor page faults when it returns."""

    def wrapper(*args, **kwargs):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = fn(*args, **kwargs)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print(
            f"{name:>12s} {time.perf_counter() - t0:7.2f}s wall {r1.ru_utime - r0.ru_utime:7.2f}s user "
            f"{r1.ru_stime - r0.ru_stime:6.2f}s kernel {r1.ru_minflt - r0.ru_minflt:8d} faults",
            flush=True,
        )
        return out

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--case", default="text", choices=sorted(bench.CASES))
    args = ap.parse_args()
    import accelerate
    import torch

    import phaserl.curriculum as curriculum
    import phaserl.stage_setup as stage_setup
    import phaserl.trainer as trainer
    import phaserl.update as update
    from phaserl.config import recipe_from_dict
    from phaserl.rollout.hf import HFEngine

    bench.model_path(args.case)  # build/convert the model before anything is timed
    stage_setup.memory_probe = timed("probe", stage_setup.memory_probe)
    HFEngine.generate = timed("generate", HFEngine.generate)  # the CPU engine's too (inherited)
    update.micro_loss = timed("  forward", update.micro_loss)
    accelerate.Accelerator.backward = timed("  backward", accelerate.Accelerator.backward)
    accelerate.Accelerator.clip_grad_norm_ = timed("  clip", accelerate.Accelerator.clip_grad_norm_)
    torch.optim.AdamW.step = timed("  optimizer", torch.optim.AdamW.step)
    trainer.update_policy = timed("update", trainer.update_policy)
    recipe = recipe_from_dict(bench.phaserl_recipe(args.case, args.steps, 8))
    with tempfile.TemporaryDirectory(prefix="step-phases-") as out:
        curriculum.run_curriculum(recipe, Path(out), fresh=True)


if __name__ == "__main__":
    main()
