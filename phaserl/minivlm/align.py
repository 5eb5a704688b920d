"""Align the mini VLM's vision side to its language model, cheaply and honestly.

Only the vision tower and the projector train; the LM is frozen. The target of each image patch is the LM's
input embedding of the character drawn in that patch (a space for blank cells), so after alignment the LM
receives, for an image of "3+4=?", a row of vectors close to the embeddings of "3", "+", "4", ... It then
half-reads the image, imperfectly: the regime in which multimodal RL has something to learn.

Regressing straight onto the embeddings learns very slowly: SmolLM2's digit embeddings are close to each
other (the squared distance from "6" to "7" is 1.0 against a squared norm of 7), so the pull towards
"the average character" swamps the small differences that tell the characters apart (measured here: 5% of
characters read after 180 steps, against 72% after 100 steps with the recipe below). So, in three phases:
  1. classify   tower + projector's first layer learn to tell the characters apart, through a temporary
                linear head (cross-entropy) on the projector's hidden layer; the head is thrown away.
  2. fit        the projector's second layer is linear, so its best map from those hidden features to
                the target embeddings is a least-squares solve (closed form, a few batches).
  3. refine     everything trains on the embedding targets: 1 - cos (direction, what the LM's first
                RMSNorm sees), squared error relative to the embeddings' size (scale), cross-entropy over
                the characters' tokens with logits -||f - e_k||^2 / tau (nearest must be the right one),
                plus the phase-1 head's loss so that the features stay separable.
Character cells and blank cells are averaged separately and weighted equally (blanks are the majority).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from phaserl.minivlm.glyphs import BLANK, Grid, random_grid, render_array, to_pixels


@dataclass
class AlignConfig:
    steps: int = 600  # optimizer steps over phases 1 and 3
    batch_size: int = 16  # images per step
    lr: float = 3e-3  # AdamW peak learning rate of phase 1 (linear warm-up, cosine decay)
    refine_lr: float = 5e-4  # peak learning rate of phase 3
    classify_share: float = 0.6  # share of the steps spent in phase 1
    fit_batches: int = 12  # batches of features for the least-squares fit of phase 2
    seed: int = 0
    cells: int = 12  # patches per image side
    cell_px: int = 16  # patch size in pixels
    problem_share: float = 0.5  # share of training images that are train-split problem layouts
    tau: float = 0.5  # temperature (in squared-distance units) of the phase-3 cross-entropy
    blank_keep: float = 0.25  # share of blank patches that enter the loss (all character patches do)
    max_seconds: float | None = None  # wall-clock cap; phases end early (and say so) when it is reached
    log_every: int = 50


@dataclass
class Targets:
    """The frozen LM side of the loss."""

    embed: torch.Tensor  # [V, D] the LM's input embeddings
    glyph_ids: torch.Tensor  # [K] token ids of the drawable characters and the blank
    class_of: torch.Tensor  # [V] index into glyph_ids of a token id (-1 for other tokens)
    blank_id: int
    scale: torch.Tensor  # mean squared norm of the glyph embeddings (makes the squared error unit-free)

    @classmethod
    def from_model(cls, model, token_ids: dict[str, int]) -> Targets:
        embed = model.get_input_embeddings().weight.detach()
        glyph_ids = torch.tensor(sorted(set(token_ids.values())))
        class_of = torch.full((embed.shape[0],), -1, dtype=torch.long)
        class_of[glyph_ids] = torch.arange(len(glyph_ids))
        return cls(embed, glyph_ids, class_of, token_ids[BLANK], embed[glyph_ids].pow(2).sum(-1).mean())


def vision_modules(model) -> list[torch.nn.Module]:
    return [model.model.vision_tower, model.model.multi_modal_projector]


def patch_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """[n, P, D] exactly what the LM receives in place of the <image> tokens."""
    out = model.model.get_image_features(
        pixel_values=pixels,
        vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    )
    return torch.stack(list(out.pooler_output))


def make_batch(
    grids: list[Grid], token_ids: dict[str, int], cfg: AlignConfig, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels [n, 3, H, W], target token ids [n, P]) for some grids, each drawn in a fresh random style."""
    images = [render_array(g, cfg.cell_px, rng) for g in grids]
    targets = [[token_ids[ch] for ch in g.labels()] for g in grids]
    return to_pixels(images), torch.tensor(targets)


def sample_grids(
    n: int, cfg: AlignConfig, rng: random.Random, problem_grids: Callable[[random.Random], Grid] | None
) -> list[Grid]:
    return [
        problem_grids(rng)
        if problem_grids is not None and rng.random() < cfg.problem_share
        else random_grid(cfg.cells, rng)
        for _ in range(n)
    ]


def hidden_features(
    model, pixels: torch.Tensor, targets: torch.Tensor, blank_id: int, blank_keep: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g [M, D], t [M]): the projector's hidden layer for all character patches and a random share of
    blank ones. The projector is per patch, so skipping most blank patches after the tower saves most of
    its cost and changes nothing else (the tower still sees every patch)."""
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    states = out.hidden_states[model.config.vision_feature_layer].flatten(0, 1)  # [n*P, Dv]
    t = targets.reshape(-1)  # [n*P]
    keep = (t != blank_id) | (torch.rand(t.shape, generator=gen) < blank_keep)
    proj = model.model.multi_modal_projector
    return proj.act(proj.linear_1(states[keep])), t[keep]


def sq_dist(f: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """[M, K] squared L2 distances between rows of f [M, D] and e [K, D] (one matmul, unlike cdist)."""
    return f.pow(2).sum(-1, keepdim=True) - 2 * f @ e.T + e.pow(2).sum(-1)


def balanced_mean(per_patch: torch.Tensor, t: torch.Tensor, blank_id: int) -> torch.Tensor:
    """Mean over character patches plus mean over blank patches (blanks would otherwise dominate)."""
    blank = t == blank_id
    parts = [per_patch[m].mean() for m in (~blank, blank) if m.any()]
    return sum(parts) / len(parts) * 2


def classify_loss(g: torch.Tensor, t: torch.Tensor, head: torch.nn.Linear, tg: Targets) -> torch.Tensor:
    """Phase 1 (and the separability term of phase 3): g [M, D] hidden features, t [M] target ids."""
    return F.cross_entropy(head(g), tg.class_of[t], reduction="none")  # [M]


def refine_loss(
    model, g: torch.Tensor, t: torch.Tensor, head: torch.nn.Linear, tg: Targets, tau: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Phase 3 per-patch loss on f = linear_2(g) [M, D] against e = embed[t] [M, D]."""
    f = model.model.multi_modal_projector.linear_2(g)  # [M, D]
    e = tg.embed[t]  # [M, D]
    cos = 1 - F.cosine_similarity(f, e, dim=-1)  # [M]
    mse = (f - e).pow(2).sum(-1) / tg.scale  # [M]
    ce = F.cross_entropy(-sq_dist(f, tg.embed[tg.glyph_ids]) / tau, tg.class_of[t], reduction="none")  # [M]
    sep = classify_loss(g, t, head, tg)  # [M]
    stats = {
        "cos": cos.mean().item(),
        "mse": mse.mean().item(),
        "ce": ce.mean().item(),
        "sep": sep.mean().item(),
    }
    return balanced_mean(cos + mse + ce + sep, t, tg.blank_id), stats


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to 5% of the peak."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


class Aligner:
    """Holds what the three phases share: the model, the frozen targets, the data stream and the clock."""

    def __init__(
        self,
        model,
        token_ids: dict[str, int],
        cfg: AlignConfig,
        problem_grids: Callable[[random.Random], Grid] | None,
        log: Callable[[str], None],
    ):
        self.model, self.token_ids, self.cfg, self.problem_grids, self.log = (
            model,
            token_ids,
            cfg,
            problem_grids,
            log,
        )
        self.tg = Targets.from_model(model, token_ids)
        self.rng = random.Random(f"minivlm:align:{cfg.seed}")
        self.gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        width = model.model.multi_modal_projector.linear_1.out_features
        self.head = torch.nn.Linear(width, len(self.tg.glyph_ids))  # phase-1 classifier, discarded after
        self.start = time.perf_counter()
        self.steps_done = {"classify": 0, "refine": 0}

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        grids = sample_grids(self.cfg.batch_size, self.cfg, self.rng, self.problem_grids)
        return make_batch(grids, self.token_ids, self.cfg, self.rng)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, targets = self.batch()
        return hidden_features(self.model, pixels, targets, self.tg.blank_id, self.cfg.blank_keep, self.gen)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run_phase(
        self, name: str, steps: int, lr: float, params: list[torch.nn.Parameter], deadline: float | None
    ) -> None:
        """AdamW with warm-up and cosine decay; stops early at the deadline (seconds since start)."""
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
        for step in range(1, steps + 1):
            g, t = self.features()
            if name == "classify":
                loss, stats = balanced_mean(classify_loss(g, t, self.head, self.tg), t, self.tg.blank_id), {}
            else:
                loss, stats = refine_loss(self.model, g, t, self.head, self.tg, self.cfg.tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            self.steps_done[name] = step
            if step % self.cfg.log_every == 0 or step == steps:
                extra = "".join(f" {k} {v:.3f}" for k, v in stats.items())
                self.log(f"align {name} {step}/{steps} loss {loss.item():.3f}{extra} ({self.elapsed():.0f}s)")
            if deadline is not None and self.elapsed() > deadline:
                self.log(f"align {name}: time cap reached after {step}/{steps} steps")
                break

    @torch.no_grad()
    def fit_output_layer(self, ridge: float = 1e-3) -> float:
        """Phase 2: least-squares linear_2 (weights and bias) from hidden features to target embeddings,
        with a small ridge relative to the features' scale. Returns the fit's relative squared error."""
        lin = self.model.model.multi_modal_projector.linear_2
        width = lin.in_features
        gram = torch.zeros(width + 1, width + 1, dtype=torch.float64)
        cross = torch.zeros(width + 1, lin.out_features, dtype=torch.float64)
        for _ in range(self.cfg.fit_batches):
            g, t = self.features()
            x = torch.cat([g, torch.ones(len(g), 1)], 1).double()  # [M, width + 1]
            gram += x.T @ x
            cross += x.T @ self.tg.embed[t].double()
        gram += ridge * gram.diagonal().mean() * torch.eye(width + 1, dtype=torch.float64)
        w = torch.linalg.solve(gram, cross)  # [width + 1, D]
        lin.weight.copy_(w[:width].T.float())
        lin.bias.copy_(w[width].float())
        g, t = self.features()
        return float(((lin(g) - self.tg.embed[t]).pow(2).sum(-1) / self.tg.scale).mean())


def train_alignment(
    model,
    token_ids: dict[str, int],
    cfg: AlignConfig,
    problem_grids: Callable[[random.Random], Grid] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train the vision tower and projector in place (three phases, see the module docstring); the LM
    stays frozen. Returns training metrics."""
    model.requires_grad_(False)
    params = [p for m in vision_modules(model) for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    for m in vision_modules(model):
        m.train()
    al = Aligner(model, token_ids, cfg, problem_grids, log)
    n_classify = max(1, round(cfg.steps * cfg.classify_share))
    cap = cfg.max_seconds
    # Phase 1 trains what comes before linear_2 (plus the temporary head); phase 2 then solves linear_2.
    first = [
        *model.model.vision_tower.parameters(),
        *model.model.multi_modal_projector.linear_1.parameters(),
        *al.head.parameters(),
    ]
    al.run_phase("classify", n_classify, cfg.lr, first, None if cap is None else cap * cfg.classify_share)
    fit_error = al.fit_output_layer()
    log(
        f"align fit: least-squares output layer, relative squared error {fit_error:.3f} ({al.elapsed():.0f}s)"
    )
    if cfg.steps - n_classify > 0:
        al.run_phase(
            "refine", cfg.steps - n_classify, cfg.refine_lr, params + list(al.head.parameters()), cap
        )
    for m in vision_modules(model):
        m.eval()
    model.requires_grad_(True)  # as a freshly loaded model would be
    return {
        "align_steps": al.steps_done,
        "align_seconds": round(al.elapsed(), 1),
        "fit_error": round(fit_error, 4),
    }
