"""RL algorithm math as pure torch functions: advantages, policy-loss pieces, sample filters."""

from phaserl.algo.advantages import (
    ADVANTAGES,
    compute_advantages,
    dr_grpo,
    grpo,
    reinforce_pp_baseline,
    rloo,
)
from phaserl.algo.filters import (
    accuracy_band,
    expand_to_samples,
    group_pass_rate,
    overlong_mask,
    zero_variance_groups,
)
from phaserl.algo.losses import (
    AGGREGATION_MODES,
    KL_ESTIMATORS,
    aggregate,
    kl_estimator,
    kl_k1,
    kl_k3,
    kl_penalty_reward,
    ppo_clip,
    sequence_ratio,
    token_ratio,
)

__all__ = [
    "ADVANTAGES",
    "AGGREGATION_MODES",
    "KL_ESTIMATORS",
    "accuracy_band",
    "aggregate",
    "compute_advantages",
    "dr_grpo",
    "expand_to_samples",
    "group_pass_rate",
    "grpo",
    "kl_estimator",
    "kl_k1",
    "kl_k3",
    "kl_penalty_reward",
    "overlong_mask",
    "ppo_clip",
    "reinforce_pp_baseline",
    "rloo",
    "sequence_ratio",
    "token_ratio",
    "zero_variance_groups",
]
