"""Load the pure-torch algorithm modules of verl and OpenRLHF without their heavy dependencies.

Both are installed with `pip install --no-deps` (the `oracle` extra, `make test-oracle`): no ray, vLLM,
DeepSpeed, flash-attn, tensordict or omegaconf. Their package `__init__` files import those (verl's
`verl/__init__.py` imports ray through `verl.protocol`; `openrlhf/models/__init__.py` imports the actor,
hence transformers models and flash-attn), so this module registers *bare* package objects for the parent
packages (the real folders, `__init__` not run) and imports only the algorithm files:

    verl.trainer.ppo.core_algos     (advantages, policy loss, value loss, KL penalty)
    verl.utils.torch_functional     (masked_mean / masked_whiten, imported by core_algos)
    verl.utils.groupwise            (group statistics, imported by core_algos)
    openrlhf.models.utils           (compute_approx_kl, compute_reward, masked_mean)
    openrlhf.models.loss            (PolicyLoss, ValueLoss)
    openrlhf.trainer.ppo_utils.length_penalty  (DAPO overlong penalty)

Modules stubbed, each only because an import line of those files drags in something heavy; none of the
stubbed names is called by the functions compared:
- `omegaconf` (DictConfig, a type hint in core_algos), `tensordict` (TensorDict, an isinstance check in
  torch_functional's collective helpers), `verl.utils.device` (device-name lookups that import verl's
  platform plugins), `verl.trainer.config` / `verl.workers.config` (AlgoConfig / ActorConfig dataclasses
  used as type hints and an isinstance assert; their real modules import the whole worker config tree);
- `deepspeed` (openrlhf.models.utils imports it at the top for ZeRO-3 leaf modules),
  `openrlhf.utils.logging_utils` (length_penalty's logger; the real one is plain logging but its package
  `__init__` imports DeepSpeed strategy code).

OpenRLHF's experience maker (`compute_advantages_and_returns`, `get_advantages_and_returns`,
`get_cumulative_returns`) is a method of a Ray actor class; `openrlhf_experience()` reads those three
functions' source out of the file and compiles them alone (they use only torch and the utils above).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path


def _site(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg) if pkg not in sys.modules else None
    if pkg in sys.modules:
        return Path(next(iter(sys.modules[pkg].__path__)))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bare_package(name: str, folder: Path) -> None:
    if name in sys.modules and getattr(sys.modules[name], "__path__", None):
        return
    mod = types.ModuleType(name)
    mod.__path__ = [str(folder)]
    sys.modules[name] = mod


def _stub(name: str, **attrs) -> None:
    if name in sys.modules:
        return
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod


def _placeholder(name: str) -> type:
    return type(name, (), {})


def verl_core_algos():
    """verl.trainer.ppo.core_algos, or None when verl is not installed."""
    root = _site("verl")
    if root is None:
        return None
    for name, sub in [
        ("verl", ""),
        ("verl.utils", "utils"),
        ("verl.trainer", "trainer"),
        ("verl.trainer.ppo", "trainer/ppo"),
        ("verl.workers", "workers"),
    ]:
        _bare_package(name, root / sub)
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        _stub("omegaconf", DictConfig=_placeholder("DictConfig"), OmegaConf=_placeholder("OmegaConf"))
    try:
        import tensordict  # noqa: F401
    except ImportError:
        _stub("tensordict", TensorDict=_placeholder("TensorDict"))
    import torch

    _stub(
        "verl.utils.device",
        get_device_name=lambda: "cpu",
        get_torch_device=lambda: torch.cpu,
        is_cuda_available=False,
        is_npu_available=False,
        get_device_id=lambda: 0,
    )
    _stub("verl.trainer.config", AlgoConfig=_placeholder("AlgoConfig"))
    _stub("verl.workers.config", ActorConfig=_placeholder("ActorConfig"))
    groupwise = importlib.import_module("verl.utils.groupwise")
    utils = sys.modules["verl.utils"]
    utils.as_torch_index = groupwise.as_torch_index
    utils.group_mean_std = groupwise.group_mean_std
    return importlib.import_module("verl.trainer.ppo.core_algos")


def _openrlhf_root() -> Path | None:
    root = _site("openrlhf")
    if root is None:
        return None
    for name, sub in [
        ("openrlhf", ""),
        ("openrlhf.models", "models"),
        ("openrlhf.trainer", "trainer"),
        ("openrlhf.trainer.ppo_utils", "trainer/ppo_utils"),
        ("openrlhf.utils", "utils"),
    ]:
        _bare_package(name, root / sub)
    _stub("deepspeed", utils=types.SimpleNamespace(set_z3_leaf_modules=None))
    import logging

    _stub("openrlhf.utils.logging_utils", init_logger=logging.getLogger)
    return root


def openrlhf_modules():
    """(openrlhf.models.utils, openrlhf.models.loss, length_penalty), or None when not installed."""
    if _openrlhf_root() is None:
        return None
    return (
        importlib.import_module("openrlhf.models.utils"),
        importlib.import_module("openrlhf.models.loss"),
        importlib.import_module("openrlhf.trainer.ppo_utils.length_penalty"),
    )


def openrlhf_experience() -> dict | None:
    """OpenRLHF's advantage code as plain functions: {name: fn} for compute_advantages_and_returns,
    get_advantages_and_returns, get_cumulative_returns (methods of the experience maker; `self` is an
    argument the caller fills with a namespace carrying `strategy.args`, `kl_ctl` and
    `advantage_estimator`, as the real object does)."""
    root = _openrlhf_root()
    if root is None:
        return None
    utils = importlib.import_module("openrlhf.models.utils")
    length_penalty = importlib.import_module("openrlhf.trainer.ppo_utils.length_penalty")
    path = root / "trainer" / "ppo_utils" / "experience_maker.py"
    tree = ast.parse(path.read_text())
    wanted = {"compute_advantages_and_returns", "get_advantages_and_returns", "get_cumulative_returns"}
    funcs = [
        node
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and node.name in wanted
    ]
    for f in funcs:
        f.decorator_list = []  # @torch.no_grad(); the inputs carry no gradient here
    module = ast.Module(body=funcs, type_ignores=[])
    import itertools
    import logging

    import torch

    namespace = {
        "torch": torch,
        "itertools": itertools,
        "List": list,
        "Tuple": tuple,
        "Experience": object,
        "logger": logging.getLogger("openrlhf"),
        "compute_reward": utils.compute_reward,
        "masked_mean": utils.masked_mean,
        "apply_length_penalties": length_penalty.apply_length_penalties,
    }
    exec(compile(module, str(path), "exec"), namespace)  # noqa: S102 - the installed peer's own source
    found = {name: namespace[name] for name in wanted if name in namespace}
    return found if len(found) == len(wanted) else None
