"""Typed recipe config: YAML, then `--set` overrides, then validation with errors naming stage and key.

A recipe has global sections (model, rollout, algo, optim, rewards, ...) and an ordered list of stages; a stage
may override any field of rollout / algo / optim (deep-merged over the globals) and names its own data, view,
template, rewards and length. `resolve(recipe)` gives one fully specified `Stage` per stage.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phaserl.data.render import PromptTemplate
from phaserl.data.schema import VIEWS
from phaserl.data.sources import DatasetSpec
from phaserl.rewards.combine import RewardSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name: str = Field("builtin:smollm2-135m-instruct", description="folder, hub id, builtin:... or tiny:...")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="parameter dtype (fp32 master weights)"
    )
    trust_remote_code: bool = Field(False, description="allow model code from the checkpoint (off: safer)")
    freeze_vision: bool = Field(False, description="freeze the vision tower and projector")
    lora: dict[str, Any] | None = Field(None, description="peft LoraConfig kwargs; None trains all weights")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations (saves memory, costs time)"
    )
    attn_implementation: str | None = Field(
        "phaserl_sdpa",
        description="attention kernel: phaserl_sdpa (sdpa; on the CPU, small causal attention as "
        "two float32 matmuls, whose backward is much cheaper than the CPU flash kernel's), sdpa, eager, "
        "flash_attention_2",
    )


class RolloutConfig(_Strict):
    engine: Literal["auto", "hf", "cpu", "vllm"] = Field(
        "auto",
        description="generation back end: hf (the reference, any device), cpu (the CPU fast engine, same "
        "samples), vllm, or auto (cpu when the policy is on the CPU, else hf)",
    )
    group_size: int = Field(8, ge=1, description="G: samples per prompt")
    max_new_tokens: int = Field(256, ge=1, description="longest completion")
    temperature: float = Field(1.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    batch_size: int = Field(64, ge=1, description="prompts per generate call")
    bf16: bool = Field(
        True, description="generate with a bf16 copy of the weights (faster matmuls, no per-step casts)"
    )
    lean_decode: bool = Field(
        True,
        description="cpu engine, bf16 copy of a Llama/Qwen2(-VL) model: decode with "
        "phaserl's lean step (rollout/cpu/lean.py), the same samples with fewer ops",
    )
    cpu_kernels: bool = Field(
        True,
        description="cpu engine's lean step on a CPU with AVX-512: its attention as one "
        "compiled call per layer (rollout/cpu/decode_attention.cpp, built on first use, cached)",
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict, description="extra VLLMEngine kwargs (gpu_memory_utilization...)"
    )


class OverlongShaping(_Strict):
    """DAPO's soft overlong punishment (sec. 3.4): a penalty growing linearly from 0 at
    max_new_tokens - buffer to -factor at max_new_tokens, added to the reward (algo/shaping.py)."""

    buffer: int = Field(
        ..., ge=1, description="L_cache: tokens before max_new_tokens where the penalty ramps up"
    )
    factor: float = Field(1.0, ge=0, description="penalty at max_new_tokens")


class AlgoConfig(_Strict):
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "gae"] = Field(
        "grpo", description="estimator (gae: PPO with a learned critic, needs a critic section)"
    )
    ratio: Literal["token", "sequence"] = Field(
        "token", description="token (PPO/GRPO) or sequence (GSPO) ratio"
    )
    eps_low: float = Field(0.2, ge=0, description="lower clip range of the ratio")
    eps_high: float = Field(0.2, ge=0, description="upper clip range (DAPO clip-higher: > eps_low)")
    aggregation: Literal["token-mean", "seq-mean", "constant"] = Field(
        "token-mean", description="loss aggregation"
    )
    kl_coef: float = Field(0.0, ge=0, description="KL weight to the frozen reference (0: no reference model)")
    kl_estimator: Literal["k1", "k3", "low_var_kl"] = Field(
        "k3", description="KL estimator (low_var_kl: k3 with verl's clamps)"
    )
    kl_in: Literal["loss", "reward"] = Field(
        "loss", description="KL as a loss term (GRPO) or reward penalty (LMM-R1)"
    )
    normalize_reward: bool = Field(
        False,
        description="standardise the batch's raw rewards before the estimator "
        "(LMM-R1's --normalize_reward; algo/returns.py says how it differs)",
    )
    dynamic_sampling: bool = Field(
        False, description="drop groups whose rewards are all equal and refill (DAPO)"
    )
    accuracy_band: tuple[float, float] | None = Field(
        None,
        description="keep prompts whose group pass rate lies in [low, high], drop and refill the rest "
        "(MM-EUREKA: [0.1, 0.9]); None: off",
    )
    max_resample_rounds: int = Field(
        3, ge=0, description="refill attempts per step for dynamic sampling / band"
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="drop (and count) prompts longer than this many "
        "tokens, never truncate them (LMM-R1: 4096); None: no cap",
    )
    overlong_filter: bool = Field(False, description="mask truncated completions out of the loss (DAPO)")
    overlong_shaping: OverlongShaping | None = Field(
        None, description="DAPO soft length penalty in the reward"
    )
    ppo_epochs: int = Field(1, ge=1, description="passes over each rollout batch")
    mini_batches: int = Field(
        1, ge=1, description="optimizer steps per pass (rollout batch split this many ways)"
    )
    micro_batch_size: int = Field(8, ge=1, description="samples per forward/backward (gradient accumulation)")

    @field_validator("accuracy_band")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"accuracy_band needs 0 <= low <= high <= 1, got {list(v)}")
        return v


class CriticConfig(_Strict):
    """The value model of PPO (`algo.advantage: gae`): a backbone with a scalar value head (phaserl/critic.py)."""

    init_from: str | None = Field(
        None,
        description="critic folder to start from (a saved critic); None: the "
        "policy's weights with a fresh value head",
    )
    lr: float = Field(9e-6, gt=0, description="critic learning rate (LMM-R1 FRE-Text: 9e-6)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay of the critic")
    max_grad_norm: float | None = Field(1.0, description="critic gradient clipping (None: off)")
    value_clip: float | None = Field(
        0.2,
        ge=0,
        description="clip of the value update around the rollout-time "
        "value (OpenRLHF --value_clip 0.2); None: plain squared error",
    )
    micro_batch_size: int = Field(8, ge=1, description="samples per critic forward/backward")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount (LMM-R1: 1)")
    lam: float = Field(1.0, ge=0, le=1, description="GAE lambda (LMM-R1: 1)")
    head_init_std: float = Field(
        0.0,
        ge=0,
        description="std of the value head's initial weights (0: zeros, "
        "every value starts at the head's bias 0)",
    )
    schedule: Literal["constant", "cosine", "linear"] | None = Field(
        None, description="critic lr schedule after warmup (None: the stage's optim.schedule)"
    )
    warmup_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="fraction of the stage's steps the critic's "
        "lr warms up over (None: the stage's optim.warmup_ratio)",
    )


class OptimConfig(_Strict):
    lr: float = Field(1e-6, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="lr schedule after warmup"
    )
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="fraction of the stage's steps spent warming up")
    max_grad_norm: float | None = Field(1.0, description="gradient clipping (None: off)")
    bf16_autocast: bool = Field(True, description="bf16 autocast for the training forward/backward")
    memory_probe: bool = Field(
        True,
        description="before a stage's first step, reach the update's peak memory "
        "once: the largest micro-batch, the optimizer state, a second micro-batch into the "
        "live gradients (out-of-memory in seconds; single process)",
    )


class CheckpointConfig(_Strict):
    every: int = Field(50, ge=1, description="save a resumable checkpoint every this many steps")
    keep_last: int = Field(2, ge=1, description="resumable checkpoints kept per stage (final/ always kept)")


class LoggingConfig(_Strict):
    tensorboard: bool = Field(True, description="write tensorboard events to OUTPUT/tb")
    wandb: bool = Field(False, description="log to Weights & Biases (needs wandb installed and a login)")
    samples_per_step: int = Field(4, ge=0, description="completions written to OUTPUT/samples/ per step")
    progress: bool = Field(True, description="show a progress bar")


class EvalConfig(_Strict):
    every: int = Field(0, ge=0, description="evaluate every N steps (0: only at stage end if data is given)")
    data: list[DatasetSpec] = Field(default_factory=list, description="held-out examples to evaluate on")
    limit: int = Field(64, ge=1, description="examples evaluated (a fixed subset)")
    views: list[str] | None = Field(None, description="views to evaluate in (default: the stage's view)")
    max_new_tokens: int | None = Field(None, description="default: the rollout's max_new_tokens")
    sampled: bool = Field(False, description="also report accuracy of one sample at the rollout temperature")
    at_start: bool = Field(
        True, description="evaluate before the stage's first step too (when data is given)"
    )


class StageConfig(_Strict):
    name: str = Field(..., description="stage name, used in folder names (DIR/stages/<k>-<name>)")
    data: list[DatasetSpec] = Field(..., min_length=1, description="the stage's data mixture")
    view: str = Field("text", description="prompt view: text, image+caption or image")
    template: str | PromptTemplate | None = Field(None, description="prompt template (default: the recipe's)")
    rewards: list[RewardSpec] | None = Field(None, description="reward components (default: the recipe's)")
    steps: int | None = Field(None, ge=1, description="optimizer steps of this stage (or give epochs)")
    epochs: float | None = Field(None, gt=0, description="passes over the stage data (alternative to steps)")
    prompts_per_step: int | None = Field(None, ge=1, description="B (default: the recipe's)")
    init_from: str | None = Field(None, description="start from this folder instead of the previous stage")
    rollout: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's rollout")
    algo: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's algo")
    critic: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's critic")
    optim: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's optim")
    eval: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's eval")

    @field_validator("view")
    @classmethod
    def _view(cls, v: str) -> str:
        if v not in VIEWS:
            raise ValueError(f"view {v!r} not in {VIEWS}")
        return v


class Recipe(_Strict):
    name: str = Field("run", description="recipe name")
    seed: int = Field(
        0, description="seeds data order, sampling and init; per stage and step streams derive from it"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    critic: CriticConfig | None = Field(
        None, description="value model for algo.advantage gae (None: no critic)"
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="accuracy")])
    unparseable_gold: Literal["skip", "zero"] = Field(
        "skip", description="reward policy when gold can't be parsed"
    )
    template: str | PromptTemplate = Field("plain", description="prompt template (name or fields)")
    prompts_per_step: int = Field(4, ge=1, description="B: prompts sampled per step")
    skip_bad_rows: bool = Field(False, description="skip (and log) bad data rows instead of failing")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    stages: list[StageConfig] = Field(..., min_length=1, description="the curriculum, run in order")


class Stage(_Strict):
    """A stage with every setting resolved (globals merged with the stage's overrides)."""

    index: int
    name: str
    data: list[DatasetSpec]
    view: str
    template: str | PromptTemplate
    rewards: list[RewardSpec]
    steps: int | None
    epochs: float | None
    prompts_per_step: int
    init_from: str | None
    rollout: RolloutConfig
    algo: AlgoConfig
    critic: CriticConfig | None
    optim: OptimConfig
    eval: EvalConfig

    @property
    def dirname(self) -> str:
        return f"{self.index + 1}-{self.name}"


class ConfigError(ValueError):
    """A recipe problem, with the stage and key named."""


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fmt_error(err: ValidationError, prefix: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        lines.append(f"{prefix}{loc}: {e['msg']}")
    return "\n".join(lines)


def resolve_stage(recipe: Recipe, k: int) -> Stage:
    s = recipe.stages[k]
    where = f"stage {k + 1} ('{s.name}'): "
    try:
        return Stage(
            index=k,
            name=s.name,
            data=s.data,
            view=s.view,
            template=s.template or recipe.template,
            rewards=s.rewards or recipe.rewards,
            steps=s.steps,
            epochs=s.epochs,
            prompts_per_step=s.prompts_per_step or recipe.prompts_per_step,
            init_from=s.init_from,
            rollout=RolloutConfig(**_deep_merge(recipe.rollout.model_dump(), s.rollout)),
            algo=AlgoConfig(**_deep_merge(recipe.algo.model_dump(), s.algo)),
            critic=_resolve_critic(recipe.critic, s.critic),
            optim=OptimConfig(**_deep_merge(recipe.optim.model_dump(), s.optim)),
            eval=EvalConfig(**_deep_merge(recipe.eval.model_dump(), s.eval)),
        )
    except ValidationError as e:
        raise ConfigError(_fmt_error(e, where)) from None


def _resolve_critic(base: CriticConfig | None, over: dict) -> CriticConfig | None:
    """The recipe's critic with the stage's overrides; a stage may also declare a critic the recipe lacks."""
    if base is None and not over:
        return None
    return CriticConfig(**_deep_merge(base.model_dump() if base is not None else {}, over))


GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline")


def _check_stage(stage: Stage) -> None:
    """Every cross-field rule of a resolved stage, in one place; each error names the stage and the keys."""
    where = f"stage {stage.index + 1} ('{stage.name}'): "
    algo, G = stage.algo, stage.rollout.group_size
    if (stage.steps is None) == (stage.epochs is None):
        raise ConfigError(where + "give exactly one of steps or epochs")
    if algo.advantage in GROUP_ESTIMATORS and G < 2:
        # every group estimator compares a sample with the other samples of its prompt: with G = 1 the
        # advantage is identically 0 (dr_grpo, reinforce_pp_baseline) or undefined (grpo's std, rloo's G - 1)
        raise ConfigError(
            where + f"rollout.group_size = {G}: algo.advantage {algo.advantage} compares the "
            "samples of a prompt and needs group_size >= 2 (or use advantage gae with a critic)"
        )
    if algo.advantage == "gae" and stage.critic is None:
        raise ConfigError(where + "algo.advantage gae (PPO with a value model) needs a `critic:` section")
    if algo.accuracy_band is not None and G < 2:
        raise ConfigError(
            where + f"algo.accuracy_band filters on the group pass rate; group_size = {G} has none"
        )
    if algo.overlong_shaping is not None and algo.overlong_shaping.buffer > stage.rollout.max_new_tokens:
        raise ConfigError(
            where + f"algo.overlong_shaping.buffer = {algo.overlong_shaping.buffer} exceeds "
            f"rollout.max_new_tokens = {stage.rollout.max_new_tokens}"
        )
    n = stage.prompts_per_step * G
    if n % algo.mini_batches:
        raise ConfigError(
            where + f"B*G = {n} samples do not split into algo.mini_batches = {algo.mini_batches}"
        )


def resolve(recipe: Recipe) -> list[Stage]:
    stages = [resolve_stage(recipe, k) for k in range(len(recipe.stages))]
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique: {names}")
    for s in stages:
        _check_stage(s)
    return stages


# ---- YAML and --set overrides ------------------------------------------------------------------------------


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_override(tree: Any, keys: list[str], value: Any, path: str = "") -> None:
    """Set tree[k1][k2]... = value. List indices are numbers; `*` applies to every element of a list."""
    head, rest = keys[0], keys[1:]
    here = f"{path}.{head}" if path else head
    if isinstance(tree, list):
        if head == "*":
            targets = range(len(tree))
        elif head.isdigit() and int(head) < len(tree):
            targets = [int(head)]
        else:
            raise ConfigError(f"--set {here}: no list element {head!r} (length {len(tree)})")
        for i in targets:
            if rest:
                apply_override(tree[i], rest, value, here)
            else:
                tree[i] = copy.deepcopy(value)
        return
    if not isinstance(tree, dict):
        raise ConfigError(f"--set {here}: {path or 'the recipe'} is not a mapping")
    if not rest:
        tree[head] = copy.deepcopy(value)
        return
    if head not in tree or tree[head] is None:
        tree[head] = {}
    apply_override(tree[head], rest, value, here)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping with at least `stages`")
    for item in overrides or []:
        keys, value = parse_override(item)
        apply_override(raw, keys, value)
    return recipe_from_dict(raw, str(path))


def _register_imported_rewards(raw: dict) -> None:
    """Rewards named "package.module:function" are imported and registered before validation."""
    import importlib

    from phaserl.rewards.combine import REWARDS, register_reward

    specs = list(raw.get("rewards") or [])
    for st in raw.get("stages") or []:
        if isinstance(st, dict):
            specs += st.get("rewards") or []
    for spec in specs:
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and ":" in name and name not in REWARDS:
            module, _, attr = name.partition(":")
            try:
                fn = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"reward {name!r}: cannot import it ({e})") from None
            register_reward(name, fn)


def recipe_from_dict(raw: dict, label: str = "recipe") -> Recipe:
    _register_imported_rewards(raw)
    try:
        recipe = Recipe(**raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = list(err["loc"])
            if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int):
                stages = raw.get("stages") or []
                name = (
                    stages[loc[1]].get("name", "?")
                    if loc[1] < len(stages) and isinstance(stages[loc[1]], dict)
                    else "?"
                )
                msgs.append(
                    f"{label}: stage {loc[1] + 1} ('{name}'): {'.'.join(map(str, loc[2:]))}: {err['msg']}"
                )
            else:
                msgs.append(f"{label}: {'.'.join(map(str, loc))}: {err['msg']}")
        raise ConfigError("\n".join(msgs)) from None
    resolve(recipe)  # validate every stage up front
    return recipe
