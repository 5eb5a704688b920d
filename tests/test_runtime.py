"""The allocator settings applied when a run starts."""

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
@pytest.mark.parametrize("env,expected", [({}, "True"), ({"PHASERL_MALLOPT": "0"}, "False")])
def test_tune_allocator(env, expected):
    code = ("from phaserl.runtime import tune_allocator; import torch; a = tune_allocator(); "
            "x = torch.ones(64 << 20, dtype=torch.uint8); del x; print(a, tune_allocator())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", **env}).stdout.split()
    assert out == [expected, expected]  # the second call answers the same without re-applying
