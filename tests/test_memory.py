"""phaserl/memory.py: the memory formula with hand-worked values, the --dry-run plan."""

import pytest

from phaserl.memory import MODEL_SHAPES, GiB, ModelShape, estimate_memory, memory_plan, shape_for_model

# 1e9 params, hidden 1000, 10 layers, 2 kv heads x 100 dims, vocab 10000: numbers easy to check by hand.
TOY = ModelShape("toy", 1e9, 1000, 10, 2, 100, 10_000)


def test_memory_formula_by_hand():
    e = estimate_memory(
        TOY,
        world_size=8,
        strategy="fsdp2",
        micro_batch=1,
        seq_len=100,
        kl=True,
        rollout="vllm",
        rollout_seqs=10,
    )
    assert e.weights == 4e9 / 8 and e.grads == 4e9 / 8 and e.optimizer == 8e9 / 8  # 16 bytes/param / W
    assert e.reference == 2e9  # the frozen bf16 reference is not sharded
    # 100 tokens x (2 x 1000 x 10 kept + 34 x 1000 recomputed + 8 x 10000 logits)
    assert e.activations == 100 * (20_000 + 34_000 + 80_000)
    assert e.engine_weights == 2e9
    assert e.kv_cache == 10 * 100 * (
        2 * 10 * 2 * 100 * 2
    )  # seqs x tokens x (K and V, layers, heads, dims, bf16)
    assert e.peak == max(e.train_peak, e.rollout_peak) == e.rollout_peak


def test_sharding_strategies_divide_the_right_parts():
    ddp, fsdp = (
        estimate_memory(TOY, world_size=4, strategy=s, rollout="server", kl=False) for s in ("ddp", "fsdp2")
    )
    assert ddp.weights == 4 * fsdp.weights == 4e9
    assert fsdp.grads == ddp.grads / 4 and fsdp.optimizer == ddp.optimizer / 4
    assert ddp.engine_weights == ddp.kv_cache == ddp.reference == 0
    frozen = estimate_memory(TOY, world_size=1, strategy="ddp", rollout="server", kl=False, trainable=0.5)
    assert frozen.grads == 2e9 and frozen.optimizer == 4e9 and frozen.weights == 4e9
    with pytest.raises(ValueError, match="unknown strategy"):
        estimate_memory(TOY, world_size=1, strategy="zero3")  # DeepSpeed is not supported


def test_hf_engine_copy_stays_through_the_update_but_its_kv_cache_does_not():
    e = estimate_memory(
        TOY, world_size=1, strategy="ddp", rollout="hf", kl=False, seq_len=100, rollout_seqs=10
    )
    assert e.engine_weights == 2e9 and e.kv_cache == 10 * 100 * (2 * 10 * 2 * 100 * 2)
    assert e.train_peak == e.weights + e.grads + e.optimizer + e.activations  # activations include the copy
    assert e.activations == 100 * (20_000 + 34_000 + 80_000) + 2e9


def test_engine_that_does_not_sleep_keeps_its_memory_through_the_update():
    asleep = estimate_memory(TOY, world_size=8, strategy="fsdp2", engine_sleeps=True)
    awake = estimate_memory(TOY, world_size=8, strategy="fsdp2", engine_sleeps=False)
    assert awake.train_peak - asleep.train_peak == pytest.approx(asleep.engine_weights + asleep.kv_cache)


def test_memory_plan_for_known_and_local_models():
    plan = memory_plan(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        micro_batch=1,
        seq_len=2048,
        rollout_seqs=64,
        kl=True,
        engine="vllm",
        world_sizes=(1, 8),
    )
    assert "8.29B params" in plan and "| 8 | fsdp2 |" in plan and "| 1 | 1 GPU |" in plan
    assert shape_for_model("Qwen/Qwen2.5-VL-3B-Instruct") is MODEL_SHAPES["qwen2.5-vl-3b"]
    tiny = shape_for_model("tiny:llama")  # counted from its config on the meta device
    assert tiny is not None and tiny.hidden == 64 and 1e6 < tiny.params < 1e7
    assert "unknown model shape" in memory_plan(
        "no/such-model-anywhere", micro_batch=1, seq_len=8, rollout_seqs=1, kl=False, engine="hf"
    )


def test_7b_fits_8_gpus_only_sharded():
    e_ddp = estimate_memory(MODEL_SHAPES["qwen2.5-vl-7b"], world_size=8, strategy="ddp", micro_batch=1)
    e_fsdp = estimate_memory(MODEL_SHAPES["qwen2.5-vl-7b"], world_size=8, strategy="fsdp2", micro_batch=1)
    assert e_ddp.peak / GiB > 80 > e_fsdp.peak / GiB
