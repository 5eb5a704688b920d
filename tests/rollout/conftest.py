"""Fixtures of the engine tests: the three tiny architectures (slightly varied weights, so greedy decoding is not
degenerate) and a batch of prompts of unequal lengths."""

import pytest

from phaserl.data.generators import arithmetic, arithmetic_vl
from phaserl.data.render import render
from phaserl.testing.tiny import load_varied_tiny


@pytest.fixture(scope="module", params=["tiny:llama", "tiny:qwen2_5_vl", "tiny:llava"])
def lm(request):
    return load_varied_tiny(request.param)


def _mixed_prompts(lm):
    """Prompts of different lengths (left padding in the batch); for VLMs, two with an image and one without."""
    if lm.is_vlm:
        ps = [render(e, "image", "boxed") for e in arithmetic_vl(n=2, seed=2, digits=2)]
        return ps + [render(e, "text", "boxed") for e in arithmetic(n=1, seed=4, digits=5)]
    return [render(e, "text", "boxed") for e in arithmetic(n=3, seed=2, digits=3)]


@pytest.fixture
def mixed_prompts():
    """mixed_prompts(lm): the prompts for a model (a function, for tests that load their own model too)."""
    return _mixed_prompts
