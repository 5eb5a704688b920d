"""phaserl/train_eval.py: the in-training evaluation's eval/* names and values, on a scripted engine."""

from scripted_completions import completions_of

from phaserl.config import recipe_from_dict, resolve
from phaserl.train_eval import eval_examples, evaluate_greedy

DATA = [
    {"generator": "arithmetic", "generator_args": {"n": 3}},
    {"generator": "arithmetic_vl", "generator_args": {"n": 2, "image_size": [56, 56]}},
]


class ImageOnlyEngine:
    """Answers right exactly when the prompt carries its image; records each call's sampling parameters."""

    def __init__(self, golds: list[str]):
        self.golds, self.params = golds, []

    def generate(self, prompts, params):
        self.params.append(params)
        return completions_of(
            [f"\\boxed{{{self.golds.pop(0)}}}" if p.images else "\\boxed{-1}" for p in prompts]
        )


def test_eval_names_and_values_per_view_greedy_and_sampled():
    recipe = recipe_from_dict(
        {
            "model": {"name": "tiny:qwen2_5_vl"},
            "rewards": [{"name": "accuracy"}],
            "rollout": {"temperature": 0.7},
            "stages": [{"name": "a", "data": DATA, "steps": 1, "view": "image"}],
            "eval": {"data": DATA, "limit": 5, "views": ["text", "image"], "sampled": True},
        }
    )
    stage = resolve(recipe)[0]
    image_golds = [ex.answer for ex in eval_examples(stage) if ex.has_image]
    assert len(image_golds) == 2
    engine = ImageOnlyEngine(image_golds * 2)  # the image view runs twice: greedy, then sampled
    out = evaluate_greedy(engine, stage, recipe)
    # text view: all 5 examples without images, every answer -1 (wrong); image view: the 2 with images, right
    assert out == {
        "eval/text/accuracy": 0.0,
        "eval/text/sampled/accuracy": 0.0,
        "eval/text/n": 5,
        "eval/image/accuracy": 1.0,
        "eval/image/sampled/accuracy": 1.0,
        "eval/image/n": 2,
    }
    assert [(p.temperature, p.seed) for p in engine.params] == [(0.0, 0), (0.7, 1234)] * 2
