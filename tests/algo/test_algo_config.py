"""Algorithm settings of a recipe: validation in one place (_check_stage) and the critic section."""

import pytest

from phaserl.config import ConfigError, CriticConfig, recipe_from_dict, resolve


def recipe(algo=None, rollout=None, critic=None, stage=None):
    st = {
        "name": "s",
        "steps": 1,
        "data": [{"generator": "arithmetic", "generator_args": {"n": 4}}],
        **(stage or {}),
    }
    raw = {
        "name": "t",
        "rollout": {"group_size": 4, "max_new_tokens": 32, **(rollout or {})},
        "algo": algo or {},
        "stages": [st],
    }
    if critic is not None:
        raw["critic"] = critic
    return raw


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_group_estimators_with_group_size_one_fail_validation(name):
    # dr_grpo used to pass validation here and fail at step 1 (group_view refuses G = 1)
    with pytest.raises(ConfigError, match=rf"stage 1 \('s'\): rollout.group_size = 1: algo.advantage {name}"):
        recipe_from_dict(recipe({"advantage": name}, {"group_size": 1}))


def test_gae_needs_a_critic_and_works_with_group_size_one():
    with pytest.raises(ConfigError, match="gae .* needs a `critic:` section"):
        recipe_from_dict(recipe({"advantage": "gae"}))
    stage = resolve(recipe_from_dict(recipe({"advantage": "gae"}, {"group_size": 1}, critic={})))[0]
    assert stage.critic == CriticConfig()
    assert (stage.critic.lr, stage.critic.gamma, stage.critic.lam, stage.critic.value_clip) == (
        9e-6,
        1.0,
        1.0,
        0.2,
    )


def test_critic_overrides_per_stage_and_a_stage_may_declare_one():
    stage = resolve(
        recipe_from_dict(
            recipe({"advantage": "gae"}, critic={"lr": 1e-5}, stage={"critic": {"value_clip": 0.5}})
        )
    )[0]
    assert stage.critic.lr == 1e-5 and stage.critic.value_clip == 0.5
    stage = resolve(recipe_from_dict(recipe(stage={"algo": {"advantage": "gae"}, "critic": {"lam": 0.95}})))[
        0
    ]
    assert stage.critic.lam == 0.95
    assert resolve(recipe_from_dict(recipe()))[0].critic is None
    with pytest.raises(ConfigError, match="critic.lr"):
        recipe_from_dict(recipe(critic={"lr": 0}))
    with pytest.raises(ConfigError, match="lamda"):
        recipe_from_dict(recipe(critic={"lamda": 0.9}))


def test_accuracy_band_overlong_shaping_and_prompt_cap_fields():
    stage = resolve(
        recipe_from_dict(
            recipe(
                {"accuracy_band": [0.1, 0.9], "max_prompt_tokens": 4096, "overlong_shaping": {"buffer": 8}}
            )
        )
    )[0]
    assert stage.algo.accuracy_band == (0.1, 0.9) and stage.algo.max_prompt_tokens == 4096
    assert stage.algo.overlong_shaping.buffer == 8 and stage.algo.overlong_shaping.factor == 1.0
    with pytest.raises(ConfigError, match="accuracy_band needs 0 <= low <= high <= 1"):
        recipe_from_dict(recipe({"accuracy_band": [0.9, 0.1]}))
    with pytest.raises(ConfigError, match="overlong_shaping.buffer = 64 exceeds rollout.max_new_tokens = 32"):
        recipe_from_dict(recipe({"overlong_shaping": {"buffer": 64}}))
    with pytest.raises(ConfigError, match="accuracy_band filters on the group pass rate"):
        recipe_from_dict(
            recipe({"advantage": "gae", "accuracy_band": [0.1, 0.9]}, {"group_size": 1}, critic={})
        )
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        recipe_from_dict(recipe({"max_prompt_tokens": 0}))


def test_new_kl_estimator_and_normalize_reward():
    stage = resolve(recipe_from_dict(recipe({"kl_estimator": "low_var_kl", "normalize_reward": True})))[0]
    assert stage.algo.kl_estimator == "low_var_kl" and stage.algo.normalize_reward


def test_lmm_r1_ppo_recipes_carry_the_papers_settings():
    from pathlib import Path

    from phaserl.config import load_recipe

    root = Path(__file__).resolve().parents[2] / "recipes"
    fre, geo = resolve(load_recipe(root / "lmm_r1_ppo_qwen2_5_vl_3b.yaml"))
    assert (fre.name, fre.view, geo.name, geo.view) == ("fre-text", "text", "mgt-geo", "image")
    for st in (fre, geo):
        assert st.algo.advantage == "gae" and st.rollout.group_size == 16 and st.algo.kl_coef == 1e-3
        assert st.critic.lr == 9e-6 and st.critic.gamma == st.critic.lam == 1.0
        assert st.algo.max_prompt_tokens == 4096 and st.rollout.temperature == 1.0
    # Tab. A7: lr 1e-6, 128 prompts, train batch 128 samples, 8192 response tokens, 1 episode
    assert fre.optim.lr == 1e-6 and fre.prompts_per_step == 128 and fre.rollout.max_new_tokens == 8192
    assert fre.prompts_per_step * 16 // fre.algo.mini_batches == 128 and fre.epochs == 1
    # MGT-Geo: lr 4e-7, 256/256, 2 episodes
    assert geo.optim.lr == 4e-7 and geo.prompts_per_step == 256 and geo.epochs == 2
    assert geo.prompts_per_step * 16 // geo.algo.mini_batches == 256
    (direct,) = resolve(load_recipe(root / "lmm_r1_direct_rl_geo_ppo_qwen2_5_vl_3b.yaml"))
    assert direct.algo.advantage == "gae" and direct.optim.lr == 1e-6 and direct.view == "image"
    assert direct.rollout.max_new_tokens == 4096 and direct.critic is not None
