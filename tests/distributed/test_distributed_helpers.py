"""Pure helpers of phaserl/distributed.py: full weights through wrappers, when the dummy vision pass runs.

The memory formula is tested in tests/test_memory.py, the name maps in tests/test_names.py."""

import pytest
import torch

from phaserl.distributed import iter_full_params, needs_dummy_vision


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)


def test_iter_full_params_through_ddp_style_and_peft_wrappers():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = _Tiny()
    plain = dict(iter_full_params(model))
    assert set(plain) == {"proj.weight", "proj.bias", "head.weight", "head.bias"}

    class Wrapper(torch.nn.Module):  # what DDP / DeepSpeed engines look like: the model under .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert set(dict(iter_full_params(Wrapper(model)))) == set(plain)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["proj"], modules_to_save=["head"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.5)
    merged = dict(iter_full_params(lora))
    assert set(merged) == set(plain)  # base names, no adapter or original_module copies
    base_w = lora.base_model.model.proj.base_layer.weight.detach().clone()
    delta = (
        lora.base_model.model.proj.lora_B["default"].weight
        @ lora.base_model.model.proj.lora_A["default"].weight
    )
    torch.testing.assert_close(
        merged["proj.weight"], base_w + delta * lora.base_model.model.proj.scaling["default"]
    )
    torch.testing.assert_close(
        merged["head.weight"], plain["head.weight"] + 0.5
    )  # the trained copy is shipped
    torch.testing.assert_close(lora.base_model.model.proj.base_layer.weight, base_w)  # unmerged afterwards


def test_needs_dummy_vision_only_for_text_only_vlm_micro_batches_under_several_ranks():
    assert needs_dummy_vision(True, False, True, 2)
    assert not needs_dummy_vision(True, True, True, 2)
    assert not needs_dummy_vision(False, False, True, 2)
    assert not needs_dummy_vision(True, False, True, 1)
    assert not needs_dummy_vision(True, False, False, 8)
