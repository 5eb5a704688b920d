"""phaserl/names.py: each map on the names a tiny Qwen2.5-VL really has under DDP, torch.compile, FSDP1,
activation checkpointing and PEFT (literal examples from the module's table, then the whole model)."""

import copy
import os
import socket

import pytest
import torch

from phaserl.names import clean_name, hf_name, named_weights, peft_name, tied_aliases, unwrap

Q = "model.language_model.layers.0.self_attn.q_proj.weight"  # the HF checkpoint form of one weight


def test_clean_name_strips_wrapper_parts():
    assert (
        clean_name("module._orig_mod.model.layers.0._fsdp_wrapped_module.mlp.weight")
        == "model.layers.0.mlp.weight"
    )
    assert (
        clean_name("model.layers.0._checkpoint_wrapped_module.self_attn.q_proj.weight")
        == "model.layers.0.self_attn.q_proj.weight"
    )
    assert clean_name("module." + Q) == Q and clean_name(Q) == Q
    # whole parts only: a part that merely contains "module" stays
    assert (
        clean_name("base_model.model.lm_head.original_module.weight")
        == "base_model.model.lm_head.original_module.weight"
    )


def test_peft_name_maps_base_weights_and_drops_adapters():
    assert peft_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight") == Q
    assert (
        peft_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight")
        is None
    )
    assert peft_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert peft_name("base_model.model.lm_head.original_module.weight") is None
    assert (
        hf_name(
            "module.base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight",
            peft=True,
        )
        == Q
    )
    assert hf_name("module.base_model.model.x.weight") == "base_model.model.x.weight"  # not PEFT: kept


@pytest.fixture(scope="module")
def qwen():
    from transformers import AutoModelForImageTextToText

    from phaserl.models import resolve_model_path

    return AutoModelForImageTextToText.from_pretrained(resolve_model_path("tiny:qwen2_5_vl"))


def _hf_names(model):
    return {n for n, _ in model.named_parameters()}


@pytest.fixture(scope="module")
def gloo():
    """A one-process gloo group, for the wrappers that need one (DDP, FSDP1)."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_compile_and_checkpoint_wrapper_names_map_back(qwen):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    plain = _hf_names(qwen)
    assert Q in plain and "model.visual.blocks.0.attn.qkv.weight" in plain
    compiled = torch.compile(qwen)  # nothing compiles until a forward; the names already carry _orig_mod
    assert "_orig_mod." + Q in _hf_names(compiled)
    assert {clean_name(n) for n in _hf_names(compiled)} == plain
    assert unwrap(compiled) is qwen
    ckpt = copy.deepcopy(qwen)
    layer = type(qwen.model.language_model.layers[0])
    apply_activation_checkpointing(ckpt, check_fn=lambda m: isinstance(m, layer))
    wrapped = _hf_names(ckpt)
    assert "model.language_model.layers.0._checkpoint_wrapped_module.self_attn.q_proj.weight" in wrapped
    assert {clean_name(n) for n in wrapped} == plain
    assert {n for n, _ in named_weights(ckpt)} == plain


def test_ddp_and_fsdp1_names_map_back(qwen, gloo):
    from torch.nn.parallel import DistributedDataParallel as DDP

    plain = _hf_names(qwen)
    ddp = DDP(copy.deepcopy(qwen))
    assert "module." + Q in _hf_names(ddp)
    assert {hf_name(n) for n in _hf_names(ddp)} == plain
    assert {n for n, _ in named_weights(ddp)} == plain
    assert tied_aliases(ddp) == tied_aliases(qwen) == ["lm_head.weight"]  # tie_word_embeddings=True

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1

    fsdp = FSDP1(copy.deepcopy(qwen), use_orig_params=True, device_id=torch.device("cpu"))
    names = _hf_names(fsdp)
    assert "_fsdp_wrapped_module." + Q in names
    assert {clean_name(n) for n in names} == plain


def test_peft_names_map_back(qwen):
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(
        copy.deepcopy(qwen), peft.LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["merger"])
    )
    names = _hf_names(lora)
    assert "base_model.model." + Q.replace("q_proj.", "q_proj.base_layer.") in names
    mapped = {hf_name(n, peft=True) for n in names} - {None}
    assert mapped == _hf_names(
        qwen
    )  # every base weight once; adapters and the frozen merger original dropped
    assert {n for n, _ in named_weights(lora)} == _hf_names(qwen)
