"""Save and load everything a resume needs, atomically.

Layout of one checkpoint folder (a transformers `save_pretrained` folder plus our state):
  model.safetensors, config.json, tokenizer/processor files   weights (fp32 master copy) and processor
  trainer_state.pt    optimizer + scheduler state dicts (torch.save; loaded with weights_only=True); under FSDP
                      the optimizer state is the full (unsharded) one, keyed by parameter name
  state.json          stage index and name, step, data cursor, seed
  COMPLETE            written last: a folder without it is a crash leftover and is ignored
A folder is written under a temporary name and renamed into place, so a crash while saving never leaves a
checkpoint that looks complete. Under FSDP the full weights and optimizer state are gathered with torch's
distributed state-dict API (every rank takes part) and written by rank 0; on resume each rank loads the full
optimizer state and the same API shards it again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from phaserl.names import tied_aliases

MARKER = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def save_folder(target: Path, write) -> Path:
    """Run write(tmp_folder), then publish it atomically as `target` (replacing an older one)."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    for f in tmp.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    (tmp / MARKER).write_text("ok\n")
    _fsync_dir(tmp)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    _fsync_dir(target.parent)
    return target


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).exists()


def gather_states(model, optimizer) -> tuple[dict | None, dict | None]:
    """(full model state dict, optimizer state dict) to save. A collective under FSDP (call on every rank;
    rank 0 gets the tensors, on the CPU). Elsewhere the module's own weights are complete: (None, the optimizer's
    state_dict()). optimizer=None skips the optimizer."""
    from phaserl.distributed import is_sharded

    if not is_sharded(model):
        return None, optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    for name in tied_aliases(
        model
    ):  # a tied lm_head is saved once, as save_pretrained does for a plain model
        weights.pop(name, None)
    optim = None
    if optimizer is not None:  # the torch optimizer under accelerate's wrapper
        optim = get_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer), options=opts)
    return weights, optim


def save_model(
    folder: Path, model, processor, *, merge_adapters: bool = True, state_dict: dict | None = None
) -> None:
    """A from_pretrained-able folder. A LoRA model is saved merged (final/), or as its adapter alone for a
    resumable checkpoint (merge_adapters=False; the base weights are the stage's starting weights).
    state_dict: the full weights gathered from a sharded model (gather_states); None saves the module's own."""
    from phaserl.models import is_peft

    if is_peft(model) and merge_adapters:
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    if state_dict is not None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    else:
        model.save_pretrained(folder, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(folder)


def save_checkpoint(
    folder: Path,
    *,
    model,
    processor,
    scheduler,
    state: dict,
    optimizer=None,
    optimizer_state: dict | None = None,
    state_dict: dict | None = None,
    extra=None,
) -> Path:
    """Weights (state_dict when gathered from shards), optimizer state (optimizer_state, else optimizer's own),
    scheduler and run state, published atomically. extra(tmp_folder) writes more into the same folder (the
    critic)."""
    optim = optimizer_state if optimizer_state is not None else optimizer.state_dict()

    def write(tmp: Path) -> None:
        save_model(tmp, model, processor, merge_adapters=False, state_dict=state_dict)
        torch.save({"optimizer": optim, "scheduler": scheduler.state_dict()}, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        if extra is not None:
            extra(tmp)

    return save_folder(folder, write)


def load_trainer_state(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore optimizer and scheduler from a checkpoint into the (prepared) model's optimizer; returns the run
    state. Under FSDP the saved full optimizer state is sharded onto this rank's parameters."""
    from phaserl.distributed import is_sharded

    blob = torch.load(Path(folder) / "trainer_state.pt", weights_only=True, map_location="cpu")
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(
            model,
            getattr(optimizer, "optimizer", optimizer),
            blob["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
    else:
        optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    return json.loads((Path(folder) / "state.json").read_text())


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step in a stage folder, if any."""
    best, best_step = None, -1
    if not Path(stage_dir).exists():
        return None
    for child in Path(stage_dir).iterdir():
        m = _CKPT.match(child.name)
        if m and is_complete(child) and int(m.group(1)) > best_step:
            best, best_step = child, int(m.group(1))
    return best


def prune_checkpoints(stage_dir: Path, keep_last: int) -> None:
    ckpts = sorted((int(m.group(1)), c) for c in Path(stage_dir).iterdir() if (m := _CKPT.match(c.name)))
    for _, c in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        shutil.rmtree(c, ignore_errors=True)
    for c in Path(stage_dir).glob(".*.tmp-*"):  # leftovers of a crash while saving
        shutil.rmtree(c, ignore_errors=True)
