"""FSDP2 (fully_shard) on CPU with gloo, 2 processes, a tiny Qwen2.5-VL, and uneven micro-batches: rank 0 has
image rows, rank 1 text-only rows. With `phaserl.distributed.dummy_vision` the step completes (no hang) and the
updated weights, gathered with `iter_full_params`, match a single-process step on the same global batch.

This file is also the worker: `torchrun --nproc_per_node 2 tests/distributed/test_distributed_fsdp2.py OUT_DIR`.
"""

import contextlib
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch

LR = 0.5


def _batches(processor):
    """The global batch as two micro-batches: [image rows, text rows] (identical on every rank)."""
    from PIL import Image

    def enc(texts, images=None):
        msgs = [
            [
                {
                    "role": "user",
                    "content": ([{"type": "image"}] if images else []) + [{"type": "text", "text": t}],
                }
            ]
            for t in texts
        ]
        prompts = [
            processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) + "The answer is 4."
            for m in msgs
        ]
        kw = {"images": images} if images else {}
        return dict(processor(text=prompts, return_tensors="pt", padding=True, padding_side="left", **kw))

    images = [Image.new("RGB", (56, 56), (200, 30, 30)), Image.new("RGB", (56, 84), (10, 200, 30))]
    return [enc(["What colour is this?", "Count the shapes."], images), enc(["What is 2+2?", "Say four."])]


def _token_mask(batch, image_pad: int) -> torch.Tensor:
    ids = batch["input_ids"][:, 1:]
    return batch["attention_mask"][:, 1:].bool() & (ids != image_pad)


def _loss_sum(model, batch, image_pad: int) -> torch.Tensor:
    """Summed next-token NLL of the real text tokens (pads and image placeholders excluded)."""
    logits = model(**batch).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="none"
    )
    return (nll * _token_mask(batch, image_pad)).sum()


def _load(path):
    from phaserl.models import load_model

    lm = load_model(path)
    lm.model.train()
    return lm


def _shard(model) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.model.visual.blocks:
        fully_shard(block)
    fully_shard(model.model.visual)
    for layer in model.model.language_model.layers:
        fully_shard(layer)
    fully_shard(model)


def worker(out_dir: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from phaserl.distributed import dummy_vision, dummy_vision_inputs, iter_full_params, needs_dummy_vision

    dist.init_process_group("gloo", timeout=timedelta(seconds=int(os.environ.get("PG_TIMEOUT", "600"))))
    rank, world = dist.get_rank(), dist.get_world_size()
    lm = _load(os.environ["TINY_VL"])
    image_pad = lm.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    batches = _batches(lm.processor)
    total = sum(int(_token_mask(b, image_pad).sum()) for b in batches)
    model = lm.model
    _shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    mine = batches[rank]
    has_images = "pixel_values" in mine
    dummy = dummy_vision_inputs(lm.processor)
    use_dummy = needs_dummy_vision(True, has_images, True, world)
    mode = os.environ.get("DUMMY_MODE", "hook")  # "loss" / "none": the failure modes, for experiments
    with dummy_vision(model, dummy) if use_dummy and mode == "hook" else contextlib.nullcontext():
        # FSDP2 averages gradients over ranks: scale so the sum over ranks is the global token mean
        loss = _loss_sum(model, mine, image_pad) * world / total
    if use_dummy and mode == "loss":
        from phaserl.distributed import vision_dummy_loss

        loss = loss + vision_dummy_loss(model, dummy)
    loss.backward()
    opt.step()
    full = {name: t.detach().clone().contiguous() for name, t in iter_full_params(model)}
    if rank == 0:
        save_file(full, str(Path(out_dir) / "fsdp2.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_vl() -> str:
    from phaserl.models import resolve_model_path

    pytest.importorskip("torchvision")
    return resolve_model_path("tiny:qwen2_5_vl")


def test_fsdp2_text_only_rank_matches_single_process(tiny_vl, tmp_path):
    from safetensors.torch import load_file

    env = {**os.environ, "TINY_VL": tiny_vl, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        __file__,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sharded = load_file(str(tmp_path / "fsdp2.safetensors"))

    lm = _load(tiny_vl)  # the same step in one process: both micro-batches, plain gradients
    image_pad = lm.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    batches = _batches(lm.processor)
    total = sum(int(_token_mask(b, image_pad).sum()) for b in batches)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    opt = torch.optim.SGD(lm.model.parameters(), lr=LR)
    sum(_loss_sum(lm.model, b, image_pad) for b in batches).div(total).backward()
    opt.step()
    after = dict(lm.model.named_parameters())
    assert set(sharded) == set(after)
    for name, ref in after.items():
        torch.testing.assert_close(sharded[name], ref.detach(), atol=2e-6, rtol=1e-5, msg=name)
    moved = {n: float((after[n] - before[n]).abs().max()) for n in after}
    assert max(v for n, v in moved.items() if ".visual." in f".{n}") > 1e-4  # the tower learned from rank 0
    assert max(v for n, v in moved.items() if "language_model" in n) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "loss"])
def test_without_the_in_forward_dummy_the_sharded_step_breaks(tiny_vl, tmp_path, mode):
    """The failure this guards against: with no dummy pass, or with the dummy added to the loss after the
    forward (DDP-style), rank 1's all-gathers do not line up with rank 0's and the gloo run aborts."""
    env = {
        **os.environ,
        "TINY_VL": tiny_vl,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DUMMY_MODE": mode,
        "PG_TIMEOUT": "40",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        __file__,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert not (tmp_path / "fsdp2.safetensors").exists()


if __name__ == "__main__":
    worker(sys.argv[1])
