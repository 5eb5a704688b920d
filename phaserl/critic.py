"""The value model of PPO (`algo.advantage: gae`): the policy's backbone with a scalar value head.

A critic is the causal LM's (or VLM's) base model, without its LM head, plus `value_head`, a Linear from
the hidden size to 1 kept in float32. Its value of completion token t is the head applied to the hidden state
at the position that predicts token t (prompt length - 1 + t), the state before the token is chosen; that is
how OpenRLHF's critic (LMM-R1's) aligns values with actions, and how `policy.completion_logp` aligns
log-probs. Inputs come from `policy.build_sequences` (the plain padded form), so text and image prompts mix
in one batch as they do for the policy.

The pieces the trainer needs, in step order:

    critic = build_critic(policy_folder, head_init_std=cfg.head_init_std)    # stage start (or load_critic)
    optimizer = critic_optimizer(critic, cfg)
    values = values_no_grad(critic, processor, prompts, completion_ids, ...)   # step 3, with old_logp
    adv, returns = collect.step_advantages(r, algo, cfg, old_logp, ref_logp, values)
    stats = critic_update(critic, optimizer, processor, prompts, completion_ids, values, returns, cfg, ...)
    save_critic(critic, folder, optimizer)                                   # checkpoint / stage end

A saved critic is self-contained (architecture config + safetensors weights + critic.json), so the next stage
can start from it (`critic.init_from`) whatever happened to the policy folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from phaserl.algo import aggregate, value_loss
from phaserl.policy import autocast_context, build_sequences, pad_rows
from phaserl.types import Prompt

CRITIC_FILE = "critic.safetensors"
CRITIC_META = "critic.json"
OPTIMIZER_FILE = "critic_optimizer.pt"


class Critic(nn.Module):
    """backbone (the LM's base model: embeddings, decoder, vision tower for a VLM) + value_head [H -> 1]."""

    def __init__(self, backbone: nn.Module, hidden_size: int, is_vlm: bool, head_init_std: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.is_vlm = is_vlm
        self.value_head = nn.Linear(hidden_size, 1, dtype=torch.float32)
        with torch.no_grad():
            if head_init_std > 0:
                self.value_head.weight.normal_(0.0, head_init_std)
            else:
                self.value_head.weight.zero_()
            self.value_head.bias.zero_()

    def forward(self, completion_len: int, **inputs) -> torch.Tensor:
        """Values [m, T] of the last `completion_len` positions' actions (inputs end with the completions)."""
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "logits_to_keep")}
        out = self.backbone(**inputs, use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [m, L, H]
        T = completion_len
        h = hidden[:, -(T + 1) : -1, :]  # [m, T, H]: position P - 1 + t holds the state before token t
        return self.value_head(h.float()).squeeze(-1)  # [m, T]


def _backbone(lm_model) -> nn.Module:
    """The base model under a causal LM / VLM head (`.model` in transformers: LlamaModel, Qwen2_5_VLModel)."""
    base = getattr(lm_model, "model", None)
    if base is None:
        raise ValueError(f"{type(lm_model).__name__} has no `.model` base to put a value head on")
    return base


def _hidden_size(config) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


def build_critic(
    policy: str,
    *,
    dtype: str = "float32",
    head_init_std: float = 0.0,
    lora: dict | None = None,
    freeze_vision: bool = False,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = "sdpa",
    seed: int = 0,
) -> Critic:
    """A fresh critic from a policy folder (or any name `models.load_model` takes): the policy's weights with
    a new value head (zeros by default, so every value starts at 0; OpenRLHF draws it from N(0, 1/(H+1)),
    `head_init_std` allows that). With `lora`, the backbone trains LoRA adapters and the head trains fully.

    Random initialisation (the head, LoRA's A matrices) draws from torch's global generator seeded with
    `seed` inside a forked RNG state: the same critic for the same seed whatever ran before, and the caller's
    random streams untouched (a resumed run and an uninterrupted one build the same critic)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _build_critic(
            policy, dtype, head_init_std, lora, freeze_vision, gradient_checkpointing, attn_implementation
        )


def _build_critic(
    policy, dtype, head_init_std, lora, freeze_vision, gradient_checkpointing, attn_implementation
) -> Critic:
    from phaserl.models import load_model

    lm = load_model(
        policy,
        dtype=dtype,
        attn_implementation=attn_implementation,
        freeze_vision=freeze_vision,
        gradient_checkpointing=gradient_checkpointing,
    )
    for p in lm.model.parameters():  # float32 master weights for what trains (bf16 compute under autocast)
        if p.requires_grad:
            p.data = p.data.float()
    config = lm.model.config
    backbone = _backbone(lm.model)
    lora = critic_lora(lora, freeze_vision)
    if lora:
        from peft import LoraConfig, get_peft_model

        backbone = get_peft_model(backbone, LoraConfig(**lora))
    critic = Critic(backbone, _hidden_size(config), lm.is_vlm, head_init_std)
    critic.lm_config = config  # the architecture, saved with the weights
    critic.lora = lora
    return critic


def critic_lora(lora: dict | None, freeze_vision: bool = False) -> dict | None:
    """The policy's LoRA settings (`model.lora`) as the critic's backbone takes them: no `task_type` (the
    backbone is a base model without an LM head, which a CAUSAL_LM PEFT wrapper would expect), and, with a
    frozen vision tower, no adapters inside it (the rule `models.load_model` applies to the policy)."""
    if not lora:
        return None
    from phaserl.models import VISION_KEYS

    lora = {k: v for k, v in dict(lora).items() if k != "task_type"}
    if freeze_vision and "exclude_modules" not in lora:
        lora["exclude_modules"] = r".*(" + "|".join(VISION_KEYS) + r").*"
    return lora


ForwardContext = Callable[[list[Prompt]], contextlib.AbstractContextManager]


def critic_values(
    critic: Critic,
    processor,
    prompts: list[Prompt],
    completion_ids: list[list[int]],
    pad_id: int,
    autocast: bool,
    device,
    context: ForwardContext | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values [m, T] (with gradient when grad is enabled) and the completion mask [m, T].

    context(prompts) wraps the forward: a multi-process VLM run passes the trainer's dummy-vision context, so
    a text-only micro-batch still runs the vision tower (the sharded collectives stay in step)."""
    inputs, targets, mask = build_sequences(processor, prompts, completion_ids, critic.is_vlm, pad_id)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    ctx = context(prompts) if context is not None else contextlib.nullcontext()
    with ctx, autocast_context(autocast, device):
        values = critic(targets.shape[1], **inputs)  # [m, T]
    return values.float(), mask.to(values.device)


@torch.no_grad()
def values_no_grad(
    critic: Critic,
    processor,
    prompts: list[Prompt],
    completion_ids: list[list[int]],
    pad_id: int,
    micro_batch_size: int,
    autocast: bool,
    device,
    context: ForwardContext | None = None,
) -> list[torch.Tensor]:
    """Rollout-time values, [N][T_i] on the CPU (the old values of the value clip and GAE's V)."""
    was_training = critic.training
    critic.eval()
    out: list[torch.Tensor] = []
    for s in range(0, len(completion_ids), micro_batch_size):
        rows = slice(s, s + micro_batch_size)
        values, _ = critic_values(
            critic, processor, prompts[rows], completion_ids[rows], pad_id, autocast, device, context
        )
        out += [values[j, : len(c)].cpu() for j, c in enumerate(completion_ids[rows])]
    critic.train(was_training)
    return out


def critic_optimizer(critic: Critic, cfg) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters at cfg.lr / cfg.weight_decay (betas as the policy's default)."""
    params = [p for p in critic.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rows_tensor(x, rows: list[int], T: int) -> torch.Tensor:
    if torch.is_tensor(x):
        return x[rows][:, :T].float()
    return pad_rows([x[i] for i in rows], T)


def critic_update(
    critic: Critic,
    optimizer,
    processor,
    prompts: list[Prompt],
    completion_ids: list[list[int]],
    old_values,
    returns,
    cfg,
    pad_id: int,
    *,
    autocast: bool = False,
    device="cpu",
    mini_batches: int = 1,
    epochs: int = 1,
    seed: int = 0,
    skipped: list[bool] | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    clip_grad_norm: Callable[[float], torch.Tensor] | None = None,
    context: ForwardContext | None = None,
    same_passes: bool = False,
) -> dict:
    """Fit the values to the GAE returns: `epochs` passes, each split into `mini_batches` optimizer steps,
    each accumulating micro-batches of cfg.micro_batch_size rows; loss = token-mean of the clipped value loss
    (cfg.value_clip around old_values), exact across micro-batches (each micro-batch weighs its share of the
    mini-batch's tokens).

    old_values / returns: [N][T_i] lists or [N, T] tensors. skipped rows ([N] bool) are left out of the loss.
    backward / no_sync / clip_grad_norm: the accelerator's (DDP/FSDP) versions; plain torch by default.
    context: wraps each forward (see critic_values).
    same_passes: keep skipped rows in the forwards, with their tokens masked out of the loss, so every
    data-parallel rank runs as many forward/backward passes as its peers whatever it skips (a rank that ran
    fewer would leave DDP's all-reduce or FSDP's all-gathers waiting); one process leaves them out instead.
    Returns mean value_loss, value_clip_frac and grad_norm over optimizer steps.
    """
    N = len(completion_ids)
    lengths = [0 if (skipped and skipped[i]) else len(c) for i, c in enumerate(completion_ids)]
    backward = backward or (lambda loss: loss.backward())
    params = [p for p in critic.parameters() if p.requires_grad]
    clip_grad_norm = clip_grad_norm or (lambda m: torch.nn.utils.clip_grad_norm_(params, m))
    no_sync = no_sync or contextlib.nullcontext
    gen = torch.Generator().manual_seed(seed)
    mb_size = max(1, N // mini_batches)
    sums = {"value_loss": 0.0, "value_clip_frac": 0.0, "grad_norm": 0.0}
    steps = 0
    critic.train()
    for epoch in range(epochs):
        order = torch.randperm(N, generator=gen).tolist() if epoch > 0 or mini_batches > 1 else list(range(N))
        for start in range(0, N, mb_size):
            mb = order[start : start + mb_size]
            total = float(sum(lengths[i] for i in mb))
            live = list(mb) if same_passes else [i for i in mb if lengths[i] > 0]
            micro = [live[k : k + cfg.micro_batch_size] for k in range(0, len(live), cfg.micro_batch_size)]
            optimizer.zero_grad(set_to_none=True)
            for k, rows in enumerate(micro):
                ctx = no_sync() if k < len(micro) - 1 else contextlib.nullcontext()
                with ctx:
                    values, mask = critic_values(
                        critic,
                        processor,
                        [prompts[i] for i in rows],
                        [completion_ids[i] for i in rows],
                        pad_id,
                        autocast,
                        device,
                        context,
                    )
                    if same_passes:  # a skipped row runs, and weighs nothing
                        keep = torch.tensor([float(lengths[i] > 0) for i in rows], device=mask.device)
                        mask = mask * keep[:, None]
                    T = values.shape[1]
                    old = _rows_tensor(old_values, rows, T).to(values)
                    ret = _rows_tensor(returns, rows, T).to(values)
                    per_tok, clipped = value_loss(values, old, ret, cfg.value_clip)  # [m, T]
                    share = float(mask.sum()) / max(total, 1.0)
                    loss = aggregate(per_tok, mask, "token-mean") * share
                    backward(loss)
                sums["value_loss"] += float(loss.detach())
                sums["value_clip_frac"] += float((clipped.float() * mask).sum()) / max(total, 1.0)
            if cfg.max_grad_norm:
                sums["grad_norm"] += float(clip_grad_norm(cfg.max_grad_norm))
            optimizer.step()
            steps += 1
    return {k: v / max(steps, 1) for k, v in sums.items()}


# ---- save / load ----------------------------------------------------------------------------------------


def save_critic(
    critic: Critic,
    folder: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write the critic (weights as safetensors, architecture config, critic.json) and, when given, its
    optimizer state; loading the folder gives bit-identical weights and optimizer moments.

    state / optimizer_state: full (gathered) state dicts to write instead of critic.state_dict() /
    optimizer.state_dict(), for a sharded critic (FSDP2), whose own state dicts hold shards."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in (state or critic.state_dict()).items()}
    save_file(state, str(folder / CRITIC_FILE))
    critic.lm_config.save_pretrained(folder)
    meta = {
        "is_vlm": critic.is_vlm,
        "hidden_size": critic.value_head.in_features,
        "lora": critic.lora,
        "dtypes": sorted({str(v.dtype) for v in state.values()}),
    }
    (folder / CRITIC_META).write_text(json.dumps(meta, indent=2) + "\n")
    if optimizer_state is not None or optimizer is not None:
        torch.save(
            optimizer_state if optimizer_state is not None else optimizer.state_dict(),
            folder / OPTIMIZER_FILE,
        )
    return folder


def is_critic_folder(folder: str | Path) -> bool:
    return (Path(folder) / CRITIC_FILE).is_file() and (Path(folder) / CRITIC_META).is_file()


def load_critic(
    folder: str | Path,
    *,
    attn_implementation: str | None = "sdpa",
    freeze_vision: bool = False,
    gradient_checkpointing: bool = False,
) -> Critic:
    """Rebuild a saved critic: the architecture from its config, then its weights (strict: every key).
    gradient_checkpointing as build_critic's: a resumed or handed-over critic trains as the fresh one did."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from phaserl.models import enable_checkpointing, vision_parameters

    folder = Path(folder)
    if not is_critic_folder(folder):
        raise FileNotFoundError(f"{folder}: not a saved critic (no {CRITIC_FILE} / {CRITIC_META})")
    meta = json.loads((folder / CRITIC_META).read_text())
    config = AutoConfig.from_pretrained(folder)
    if attn_implementation and attn_implementation.startswith("phaserl_"):
        import phaserl.attention  # noqa: F401
    auto = AutoModelForImageTextToText if meta["is_vlm"] else AutoModelForCausalLM
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    lm_model = auto.from_config(config, **kwargs)
    if freeze_vision:
        for p in vision_parameters(lm_model):
            p.requires_grad_(False)
    if gradient_checkpointing:
        enable_checkpointing(lm_model)
    backbone = _backbone(lm_model)
    if meta.get("lora"):
        from peft import LoraConfig, get_peft_model

        backbone = get_peft_model(backbone, LoraConfig(**meta["lora"]))
    critic = Critic(backbone, meta["hidden_size"], meta["is_vlm"])
    state = load_file(str(folder / CRITIC_FILE))
    critic.load_state_dict(state, strict=True)
    critic.lm_config = config
    critic.lora = meta.get("lora")
    return critic


def load_critic_optimizer(optimizer: torch.optim.Optimizer, folder: str | Path) -> bool:
    """Load the optimizer state saved beside a critic; False when there is none (a fresh stage)."""
    path = Path(folder) / OPTIMIZER_FILE
    if not path.is_file():
        return False
    optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return True


def critic_for_stage(cfg, policy_folder: str, previous: str | Path | None = None, **kwargs) -> Critic:
    """The critic a stage starts from: cfg.init_from if set, else the previous stage's saved critic, else a
    fresh one on the policy's weights (the hand-over rule the policy follows too)."""
    source = cfg.init_from or (str(previous) if previous is not None and is_critic_folder(previous) else None)
    if source is not None:
        return load_critic(
            source,
            **{
                k: v
                for k, v in kwargs.items()
                if k in ("attn_implementation", "freeze_vision", "gradient_checkpointing")
            },
        )
    return build_critic(policy_folder, head_init_std=cfg.head_init_std, **kwargs)
