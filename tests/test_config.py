import pytest

from phaserl.config import ConfigError, load_recipe, recipe_from_dict, resolve

BASE = {
    "name": "t",
    "rollout": {"group_size": 4, "temperature": 1.0},
    "algo": {"advantage": "grpo", "eps_high": 0.28},
    "stages": [
        {"name": "a", "steps": 2, "data": [{"generator": "arithmetic", "generator_args": {"n": 8}}]},
        {
            "name": "b",
            "steps": 3,
            "view": "image",
            "algo": {"kl_coef": 0.01},
            "rollout": {"group_size": 8},
            "data": [{"generator": "arithmetic_vl", "generator_args": {"n": 8}}],
        },
    ],
}


def test_stage_overrides_merge_over_globals():
    stages = resolve(recipe_from_dict(BASE))
    assert stages[0].rollout.group_size == 4 and stages[1].rollout.group_size == 8
    assert stages[1].algo.kl_coef == 0.01 and stages[1].algo.eps_high == 0.28  # merged, not replaced
    assert stages[0].algo.kl_coef == 0.0
    assert stages[1].dirname == "2-b"


def test_unknown_key_names_stage_and_key():
    bad = {**BASE, "stages": [dict(BASE["stages"][0]), {**BASE["stages"][1], "algo": {"eps_hgh": 1}}]}
    with pytest.raises(ConfigError, match=r"stage 2 \('b'\).*eps_hgh"):
        recipe_from_dict(bad)


def test_bad_view_and_missing_steps_are_named():
    bad = {**BASE, "stages": [{**BASE["stages"][0], "view": "video"}]}
    with pytest.raises(ConfigError, match=r"stage 1 \('a'\).*view"):
        recipe_from_dict(bad)
    no_len = {**BASE, "stages": [{k: v for k, v in BASE["stages"][0].items() if k != "steps"}]}
    with pytest.raises(ConfigError, match="steps or epochs"):
        recipe_from_dict(no_len)


def test_set_overrides_with_indices_and_wildcards(tmp_path):
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    rec = load_recipe(
        path, ["model.name=tiny:llama", "stages.*.steps=1", "stages.1.algo.kl_coef=0.5", "optim.lr=2e-5"]
    )
    assert rec.model.name == "tiny:llama"
    assert [s.steps for s in rec.stages] == [1, 1]
    assert resolve(rec)[1].algo.kl_coef == 0.5
    assert rec.optim.lr == 2e-5
    with pytest.raises(ConfigError, match="no list element"):
        load_recipe(path, ["stages.7.steps=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_recipe(path, ["stages"])


def test_shipped_recipes_validate():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")):
        rec = load_recipe(path)
        assert resolve(rec), path
