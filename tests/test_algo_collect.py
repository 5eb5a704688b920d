"""collect() and step_advantages() with a scripted fake engine (no model): the accuracy band, dynamic
sampling, the prompt-length cap, the multi-rank refill loop, overlong shaping and skipped (undecidable) rows."""

from __future__ import annotations

import pytest
import torch

from phaserl.collect import advantages, collect, step_advantages
from phaserl.config import CriticConfig, recipe_from_dict, resolve
from phaserl.data.schema import Example
from phaserl.types import Completions

RIGHT = "<think>ok</think><answer>{gold}</answer>"
WRONG = "<think>ok</think><answer>999</answer>"


class ScriptedEngine:
    """Answers prompt i of the stream with script[question] (G texts); completion length = words * `per_word`."""

    def __init__(self, script: dict[str, list[str]], lengths: dict[str, list[int]] | None = None):
        self.script, self.lengths, self.calls = script, lengths or {}, []

    def generate(self, prompts, params):
        assert prompts, "the engine must never be called with an empty list"
        self.calls.append(len(prompts))
        texts, ids = [], []
        for p in prompts:
            q = (
                p.messages[-1]["content"]
                if isinstance(p.messages[-1]["content"], str)
                else str(p.messages[-1])
            )
            key = next(k for k in self.script if k in q)
            texts += self.script[key]
            ids += [[7] * n for n in self.lengths.get(key, [3] * params.n)]
        n = len(texts)
        return Completions(
            prompt_ids=[[1]] * n,
            completion_ids=ids,
            texts=texts,
            logp=[torch.zeros(len(c)) for c in ids],
            truncated=[False] * n,
        )


def make_stage(G=2, B=2, critic=None, **algo):
    raw = {
        "name": "t",
        "rollout": {"group_size": G, "max_new_tokens": 10},
        "prompts_per_step": B,
        "critic": critic,
        "rewards": [{"name": "format", "weight": 0.5}, {"name": "last_number"}],
        "algo": algo,
        "stages": [
            {"name": "s", "steps": 1, "data": [{"generator": "arithmetic", "generator_args": {"n": 4}}]}
        ],
    }
    return resolve(recipe_from_dict(raw))[0]


def stream(examples):
    """draw(k) over a fixed list, recording the k of each call."""
    state = {"i": 0, "ks": []}

    def draw(k):
        state["ks"].append(k)
        out = examples[state["i"] : state["i"] + k]
        state["i"] += k
        return out

    return draw, state


def ex(name: str, gold: str = "3") -> Example:
    return Example(id=name, question=f"question {name}", answer=gold)


def test_accuracy_band_drops_and_refills_and_counts():
    # G=2: pass rates a: 0, b: 1, c: 0.5, d: 0.5; band [0.1, 0.9] keeps c and d
    script = {
        "qa": [WRONG, WRONG],
        "qb": [RIGHT.format(gold=3)] * 2,
        "qc": [RIGHT.format(gold=3), WRONG],
        "qd": [WRONG, RIGHT.format(gold=3)],
    }
    draw, state = stream([ex("qa"), ex("qb"), ex("qc"), ex("qd")])
    r = collect(ScriptedEngine(script), draw, make_stage(accuracy_band=(0.1, 0.9)), seed=0)
    assert [e.id for e in r.examples] == ["qc", "qd"]
    assert state["ks"] == [2, 2] and r.dropped_band == 2 and r.dropped_groups == 0 and r.filler_groups == 0
    assert r.skipped_rows() == [False] * 4


def test_band_and_dynamic_sampling_count_separately_and_fillers_get_no_gradient():
    # b's rewards are all equal (dynamic sampling drops it); e differs in format only (pass rate 0: band drops)
    script = {"qb": [RIGHT.format(gold=3)] * 2, "qe": [WRONG, "999"], "qc": [RIGHT.format(gold=3), WRONG]}
    draw, _ = stream([ex("qb"), ex("qe"), ex("qc")])
    stage = make_stage(dynamic_sampling=True, accuracy_band=(0.1, 0.9), max_resample_rounds=1)
    r = collect(ScriptedEngine(script), draw, stage, seed=0)
    assert r.dropped_groups == 1 and r.dropped_band == 1
    # round 2 drew one prompt (qc, kept); the mixture ran dry, so one dropped group fills in, skipped
    assert [e.id for e in r.examples] == ["qc", "qb"] and r.filler_groups == 1
    assert r.skipped_rows() == [False, False, True, True]
    adv = advantages(r, "dr_grpo")
    assert adv[2:].abs().sum() == 0 and adv[:2].abs().sum() > 0


def test_long_prompts_are_dropped_counted_and_never_generated():
    script = {
        "qa": [RIGHT.format(gold=3), WRONG],
        "qlong": [WRONG, WRONG],
        "qc": [WRONG, RIGHT.format(gold=3)],
    }
    draw, state = stream([ex("qa"), ex("qlong"), ex("qc")])
    engine = ScriptedEngine(script)

    def count(prompts):  # a fake tokenizer: 100 tokens for the long one
        return [100 if "qlong" in p.messages[-1]["content"] else 10 for p in prompts]

    stage = make_stage(max_prompt_tokens=50)
    r = collect(engine, draw, stage, seed=0, prompt_tokens=count)
    assert [e.id for e in r.examples] == ["qa", "qc"] and r.dropped_long_prompts == 1
    assert state["ks"] == [2, 1] and engine.calls == [1, 1]
    with pytest.raises(ValueError, match="prompt_tokens"):
        collect(engine, stream([ex("qa")])[0], stage, seed=0)


def test_refill_loop_runs_while_any_rank_needs_groups():
    # this rank is full after round 1; another rank is not (any_rank says True twice): draw(0) is still
    # called every round, the engine never sees an empty list, and all ranks stop together
    script = {"qa": [RIGHT.format(gold=3), WRONG], "qc": [WRONG, RIGHT.format(gold=3)]}
    draw, state = stream([ex("qa"), ex("qc")])
    engine = ScriptedEngine(script)
    answers = iter([True, True, True, False])
    r = collect(engine, draw, make_stage(dynamic_sampling=True), seed=0, any_rank=lambda flag: next(answers))
    assert state["ks"] == [2, 0, 0] and engine.calls == [2] and len(r.examples) == 2
    # without filters there is one round, as before
    draw, state = stream([ex("qa"), ex("qc")])
    collect(engine, draw, make_stage(), seed=0, any_rank=lambda flag: True)
    assert state["ks"] == [2]


def test_overlong_shaping_adds_a_component():
    script = {"qa": [RIGHT.format(gold=3), WRONG]}
    engine = ScriptedEngine(script, lengths={"qa": [5, 10]})
    stage = make_stage(B=1, overlong_shaping={"buffer": 4, "factor": 1.0})
    r = collect(engine, stream([ex("qa")])[0], stage, seed=0)
    # max_new_tokens 10, buffer 4: length 5 is free, length 10 gets -1
    assert r.rewards.components["overlong"] == [0.0, -1.0]
    assert r.rewards.total == pytest.approx([1.5, 0.5 - 1.0])


def test_unparseable_gold_skip_trains_nothing_on_format_alone():
    # gold "x^" is not a number: last_number is None (undecidable); the format reward alone would give 0.5
    script = {"qu": [RIGHT.format(gold=3), WRONG, "no format"], "qa": [RIGHT.format(gold=3), WRONG, WRONG]}
    stage = make_stage(G=3, B=2)
    r = collect(ScriptedEngine(script), stream([ex("qu", gold="x^"), ex("qa")])[0], stage, seed=0)
    assert r.rewards.total[:3] == [0.5, 0.5, 0.0]
    assert r.skipped_rows() == [True] * 3 + [False] * 3
    for name in ("grpo", "dr_grpo", "rloo"):
        adv = advantages(r, name)
        assert adv[:3].abs().sum() == 0 and adv[3:].abs().sum() > 0
    adv, _ = step_advantages(r, stage.algo)
    assert adv[:3].abs().sum() == 0
    adv, _ = step_advantages(r, make_stage(G=3, B=2, advantage="reinforce_pp_baseline").algo)
    assert adv.shape == (6, 3) and adv[:3].abs().sum() == 0 and adv[3:].abs().sum() > 0


def test_a_skipped_sample_stays_out_of_its_groups_baseline():
    # one group [undecidable, right, wrong]: dr_grpo over the two decidable rows gives +-0.5 (right: 1.5
    # total with format, wrong: 0.5; mean 1.0), exactly as if the skipped row were absent
    script = {"qa": ["<think>a</think><answer>abc</answer>", RIGHT.format(gold=3), WRONG]}
    r = collect(ScriptedEngine(script), stream([ex("qa")])[0], make_stage(G=3, B=1), seed=0)
    r.skipped = [True, False, False]
    assert advantages(r, "dr_grpo").tolist() == pytest.approx([0.0, 0.5, -0.5])


def test_step_advantages_gae_and_reinforce_pp_shapes_and_kl():
    script = {"qa": [RIGHT.format(gold=3), WRONG], "qc": [WRONG, RIGHT.format(gold=3)]}
    engine = ScriptedEngine(script, lengths={"qa": [2, 4], "qc": [3, 1]})
    r = collect(engine, stream([ex("qa"), ex("qc")])[0], make_stage(), seed=0)
    T = 4
    old = [torch.full((n,), -1.0) for n in (2, 4, 3, 1)]
    ref = [torch.full((n,), -1.5) for n in (2, 4, 3, 1)]
    values = [torch.rand(n) for n in (2, 4, 3, 1)]
    stage = make_stage(advantage="gae", kl_coef=0.1, kl_in="reward", kl_estimator="k1", critic={"lam": 0.95})
    critic = stage.critic
    assert critic == CriticConfig(lam=0.95)
    adv, ret = step_advantages(r, stage.algo, critic, old, ref, values)
    assert adv.shape == ret.shape == (4, T)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]]).bool()
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()
    # gamma = 1, the last token's return is its reward minus its KL share (k1 = 0.5 per token)
    assert float(ret[1, 3]) == pytest.approx(0.5 - 0.05)
    with pytest.raises(ValueError, match="values"):
        step_advantages(r, stage.algo, critic, old, ref, None)
    pp = make_stage(advantage="reinforce_pp_baseline", kl_coef=0.1, kl_in="reward", kl_estimator="k1").algo
    adv, ret = step_advantages(r, pp, None, old, ref)
    assert adv.shape == (4, T) and ret is None and (adv[~mask] == 0).all()
    assert float(adv[mask].mean()) == pytest.approx(0.0, abs=1e-6)  # whitened over real tokens
