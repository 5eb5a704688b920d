"""The pieces of the GPU / multi-process path that a CPU can check: activation checkpointing through the
trainer's log-prob paths, fp32 master weights for a bf16 model, the dummy vision pass running the tower once,
and the trainer refusing back ends it does not support."""

import pytest
import torch

from phaserl.models import load_model
from phaserl.policy import checkpointing_active, rows_logp
from phaserl.types import Prompt


def _rows(lm):
    from PIL import Image

    img = Prompt(
        messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}],
        images=[Image.new("RGB", (56, 56), (200, 30, 30))],
    )
    txt = Prompt(messages=[{"role": "user", "content": "What is 2+2?"}])
    prompts = [img, img, txt, txt]
    comps = [[11, 12, 13], [14, 15], [16, 17, 18, 19], [20]]
    return prompts, comps


def _logp_and_grads(lm, prompts, comps):
    lm.model.zero_grad(set_to_none=True)
    logp, mask = rows_logp(
        lm.model, lm.processor, prompts, comps, True, lm.tokenizer.pad_token_id, 1.0, False, "cpu"
    )  # float32: the two forms then agree to rounding
    (logp * mask).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in lm.model.named_parameters() if p.grad is not None}
    return (logp * mask).detach(), grads


def test_checkpointed_model_gives_the_plain_paths_logps_and_gradients():
    """Checkpointing turns the KV cache off in training mode, so the shared-prefix form must step aside; the
    numbers are those of the plain and shared forms without checkpointing."""
    plain = load_model("tiny:qwen2_5_vl")
    ckpt = load_model("tiny:qwen2_5_vl", gradient_checkpointing=True)
    plain.model.train()
    ckpt.model.train()
    assert checkpointing_active(ckpt.model) and not checkpointing_active(plain.model)
    ckpt.model.eval()
    assert not checkpointing_active(ckpt.model)  # eval mode: transformers keeps the cache on
    ckpt.model.train()
    prompts, comps = _rows(plain)
    ref_logp, ref_grads = _logp_and_grads(plain, prompts, comps)  # shared prefix, no checkpointing
    logp, grads = _logp_and_grads(ckpt, prompts, comps)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    assert set(grads) == set(ref_grads)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    # and the no-grad pass the trainer uses for old/reference log-probs runs on a checkpointed model too
    with torch.no_grad():
        again, _ = rows_logp(
            ckpt.model, ckpt.processor, prompts, comps, True, ckpt.tokenizer.pad_token_id, 1.0, False, "cpu"
        )
    torch.testing.assert_close(again * (logp != 0), logp, atol=1e-5, rtol=1e-5)


def test_bf16_model_keeps_fp32_master_weights_so_small_updates_land():
    lm = load_model("tiny:llama", dtype="bfloat16", trainable_dtype="float32")
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}
    frozen = load_model("tiny:qwen2_5_vl", dtype="bfloat16", freeze_vision=True, trainable_dtype="float32")
    dtypes = {n: p.dtype for n, p in frozen.model.named_parameters()}
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if ".visual." in f".{n}")  # frozen: as loaded
    assert all(d == torch.float32 for n, d in dtypes.items() if "language_model" in n)

    def one_step(model) -> float:
        """Share of the weights with a gradient that an AdamW step at lr 1e-6 changed."""
        model.train()
        ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        changed = total = 0
        for n, p in model.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0:
                hit = p.grad != 0
                changed += int((p.detach() != before[n])[hit].sum())
                total += int(hit.sum())
        return changed / total

    assert one_step(lm.model) > 0.99
    pure_bf16 = load_model("tiny:llama", dtype="bfloat16")  # what the recipes did before: updates round away
    assert one_step(pure_bf16.model) < 0.5


def test_dummy_vision_runs_the_tower_once_per_micro_batch_like_an_image_rank():
    """An image micro-batch runs the tower once (its prompt pass), however many forwards its log-probs take; the
    dummy pass on a text-only micro-batch must match that count, or FSDP's all-gathers go out of step."""
    from phaserl.distributed import CallCounter, dummy_vision, dummy_vision_inputs, vision_tower
    from phaserl.update import vision_context

    lm = load_model("tiny:qwen2_5_vl")
    lm.model.train()
    counter = CallCounter(vision_tower(lm.model))
    prompts, comps = _rows(lm)
    dummy = dummy_vision_inputs(lm.processor)
    for shared in (True, False):
        for rows in ([0, 1], [2, 3]):  # image rows, then text-only rows under the dummy pass
            counter.reset()
            ps = [prompts[i] for i in rows]
            with vision_context(lm.model, dummy, ps):
                logp, mask = rows_logp(
                    lm.model,
                    lm.processor,
                    ps,
                    [comps[i] for i in rows],
                    True,
                    lm.tokenizer.pad_token_id,
                    1.0,
                    False,
                    "cpu",
                    shared_prefix=shared,
                )
            (logp * mask).sum().backward()
            assert counter.reset() == 1, (shared, rows)
    with dummy_vision(lm.model, dummy):  # the context alone adds nothing to the text's value
        out = lm.model(input_ids=torch.tensor([[1, 2, 3]])).logits
    torch.testing.assert_close(out, lm.model(input_ids=torch.tensor([[1, 2, 3]])).logits)
    lm.model.eval()
    counter.reset()
    with torch.no_grad():
        lm.model(
            **{
                k: v
                for k, v in lm.processor(
                    text=["<|vision_start|><|image_pad|><|vision_end|>x"],
                    images=[prompts[0].images[0]],
                    return_tensors="pt",
                ).items()
            }
        )
    assert counter.reset() == 0  # generation (eval mode) is not counted


def test_trainer_refuses_deepspeed_and_lora_under_fsdp():
    from types import SimpleNamespace

    from phaserl.config import recipe_from_dict
    from phaserl.stage_setup import check_backend

    recipe = recipe_from_dict({"stages": [{"name": "s", "steps": 1, "data": [{"generator": "arithmetic"}]}]})
    with pytest.raises(ValueError, match="DeepSpeed is not supported"):
        check_backend(SimpleNamespace(distributed_type="DEEPSPEED"), recipe)
    lora = recipe.model_copy(update={"model": recipe.model.model_copy(update={"lora": {"r": 4}})})
    with pytest.raises(ValueError, match="LoRA under FSDP"):
        check_backend(SimpleNamespace(distributed_type="FSDP"), lora)
    check_backend(SimpleNamespace(distributed_type="MULTI_GPU"), lora)  # DDP + LoRA is fine


def test_ranks_drawing_different_counts_keep_one_cursor():
    """Under dynamic sampling ranks refill different numbers of prompts; every rank must still advance the data
    cursor by the global count (only rank 0's cursor is saved) and take disjoint examples."""
    from types import SimpleNamespace

    from phaserl.data.mixture import Mixture
    from phaserl.data.schema import Example
    from phaserl.ranks import drawer

    examples = [Example(id=str(i), question=f"q{i}", answer="1") for i in range(50)]

    def rank(r: int, wants: list[int]):
        acc = SimpleNamespace(
            num_processes=2, process_index=r, device="cpu", gather=lambda t: torch.tensor(wants)
        )  # both ranks' k, as the all-gather returns
        mixture = Mixture([("d", examples, 1.0)], seed=3, stage=0)
        return mixture, drawer(acc, mixture)

    (m0, d0), (m1, d1) = rank(0, [3, 1]), rank(1, [3, 1])
    got0, got1 = d0(3), d1(1)
    reference = Mixture([("d", examples, 1.0)], seed=3, stage=0).next_batch(4)
    assert [e.id for e in got0 + got1] == [e.id for e in reference]
    assert m0.state_dict() == m1.state_dict()
