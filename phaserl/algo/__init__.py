"""RL algorithm math as pure torch functions: advantages (per sequence and per token), policy- and
value-loss pieces, sample filters, reward shaping."""

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
    aggregation_count,
    kl_estimator,
    kl_k1,
    kl_k3,
    kl_low_var,
    kl_penalty_reward,
    ppo_clip,
    sequence_ratio,
    token_ratio,
    value_loss,
)
from phaserl.algo.returns import (
    gae,
    gae_advantages,
    last_token_index,
    masked_whiten,
    reinforce_pp_baseline_tokens,
    reward_to_go,
    token_rewards,
)
from phaserl.algo.shaping import overlong_penalty, standardize

__all__ = [
    "ADVANTAGES",
    "AGGREGATION_MODES",
    "KL_ESTIMATORS",
    "accuracy_band",
    "aggregate",
    "aggregation_count",
    "compute_advantages",
    "dr_grpo",
    "expand_to_samples",
    "gae",
    "gae_advantages",
    "group_pass_rate",
    "grpo",
    "kl_estimator",
    "kl_k1",
    "kl_k3",
    "kl_low_var",
    "kl_penalty_reward",
    "last_token_index",
    "masked_whiten",
    "overlong_mask",
    "overlong_penalty",
    "ppo_clip",
    "reinforce_pp_baseline",
    "reinforce_pp_baseline_tokens",
    "reward_to_go",
    "rloo",
    "sequence_ratio",
    "standardize",
    "token_ratio",
    "token_rewards",
    "value_loss",
    "zero_variance_groups",
]
