"""The CPU engine's allocator settings: applied when a run uses it, never by importing phaserl."""

import subprocess
import sys
from pathlib import Path

import pytest

# The page faults of a freshly allocated 200 MB tensor, the third time round: about 0 when the allocator reuses
# the freed block, about 49k (of 4 kB) when torch faults it in again.
_FAULTS = """
import resource
import torch


def reuse_faults():
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(50_000_000)  # 200 MB
        x.fill_(1.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del x
    return faults[-1]
"""


def _python(code: str, *args: str, env: dict | None = None) -> list[str]:
    """The words `code` prints, run in a fresh interpreter with a bare environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    ).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
@pytest.mark.parametrize("env,expected", [({}, "True"), ({"PHASERL_MALLOPT": "0"}, "False")])
def test_tune_allocator(env, expected):
    code = (
        "from phaserl.runtime import tune_allocator; import torch; a = tune_allocator(); "
        "x = torch.ones(64 << 20, dtype=torch.uint8); del x; print(a, tune_allocator())"
    )
    out = _python(code, env=env)
    assert out == [expected, expected]  # the second call answers the same without re-applying


def test_import_phaserl_changes_no_allocator_setting():
    """Importing phaserl (and its CLI) leaves the allocator alone: only the CPU engine's runs change it."""
    code = "import phaserl, phaserl.cli, os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    assert _python(code) == ["None"]


_REUSE = (
    """
import torch
from phaserl.runtime import prepare_cpu_engine
print(prepare_cpu_engine())  # before the first tensor, as phaserl train/eval do when the CPU engine is chosen
"""
    + _FAULTS
    + """
print(reuse_faults())
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts from getrusage")
@pytest.mark.parametrize("env", [{}, {"PHASERL_THP": "0"}])
def test_cpu_engine_settings_make_large_blocks_reusable(env):
    """With the CPU engine's settings applied before the first tensor, a freed 200 MB tensor is reused (about 0
    page faults); opted out, torch page-faults it in again on every allocation (about 49k faults of 4 kB)."""
    out = _python(_REUSE, env=env)
    if env:
        assert out[0] == "False" and int(out[1]) > 10_000
    else:
        assert out[0] == "True" and int(out[1]) < 2_000


def test_the_trainer_applies_them_only_for_the_cpu_engine(monkeypatch):
    """run_curriculum applies prepare_cpu_engine when a stage's engine resolves to cpu (auto on a CPU), not for hf."""
    import phaserl.curriculum as curriculum
    import phaserl.runtime as runtime
    from phaserl.config import load_recipe

    calls = []

    class Stop(Exception):
        pass

    def no_accelerator():
        raise Stop

    monkeypatch.setattr(runtime, "prepare_cpu_engine", lambda: calls.append(1))
    monkeypatch.setattr(curriculum, "make_accelerator", no_accelerator)
    monkeypatch.setattr(curriculum, "_has_accelerator", lambda: False)
    for engine, expected in (("auto", 1), ("hf", 0), ("cpu", 1)):
        calls.clear()
        recipe = load_recipe(
            Path(__file__).parents[1] / "recipes/smoke_tiny.yaml", [f"rollout.engine={engine}"]
        )
        with pytest.raises(Stop):
            curriculum.run_curriculum(recipe, "unused")
        assert len(calls) == expected, engine


_TRAIN_START = (
    """
import sys
import phaserl.curriculum as curriculum
from phaserl.config import load_recipe


class Stop(Exception):
    pass


def stop():
    raise Stop


curriculum.make_accelerator = stop  # everything run_curriculum does before its first tensor, then stop
try:
    curriculum.run_curriculum(load_recipe(sys.argv[1], ["rollout.engine=" + sys.argv[2]]), "unused")
except Stop:
    pass
import os
"""
    + _FAULTS
    + """
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), reuse_faults())
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts from getrusage")
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="auto picks the plain engine on a GPU")
@pytest.mark.parametrize("engine", ["auto", "hf"])
def test_a_cpu_engine_run_gets_them_before_its_first_tensor(engine):
    """`phaserl train` with the CPU engine (auto on a CPU) applies the settings early enough for torch to use them;
    with the plain engine nothing is set."""
    recipe = str(Path(__file__).parents[1] / "recipes/smoke_tiny.yaml")
    out = _python(_TRAIN_START, recipe, engine)
    if engine == "auto":
        assert out[0] == "1" and int(out[1]) < 2_000
    else:
        assert out[0] == "None" and int(out[1]) > 10_000
