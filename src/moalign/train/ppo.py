"""The per-token pieces of multi-objective PPO: GAE per objective, the KL penalty, and Noon PPO's loss.

These are the building blocks of the RL trainer (PAMA, MORLHF, MGDA-UB on PPO losses); each is a pure
function of tensors, tested against hand-computed references.

Shapes: ``B`` sequences of ``T`` response tokens, ``K`` objectives. ``mask`` ``(B, T)`` marks the real
response tokens (a prefix of each row; padding after). Per-objective tensors carry ``K`` last.

* **GAE** (Schulman et al. 2016): ``delta_t = r_t + gamma V_{t+1} - V_t`` (``V`` is 0 past the last
  token), ``A_t = delta_t + gamma lambda A_{t+1}``; returns ``A + V`` are the value targets.
* **KL penalty** per token between the policy and the reference: ``k1 = log pi - log ref`` (the usual
  RLHF per-token penalty, unbiased for the sequence KL) or ``k3 = (rho - 1) - log rho`` with
  ``rho = ref / pi`` (non-negative, lower variance; Schulman's "approximating KL" note).
* **Noon PPO** (PAMA, arXiv 2508.07768): advantages clipped at zero, ``A = max(A', 0)``, in PPO's clipped
  surrogate ``min(u A, clip(u, 1 - eps, 1 + eps) A)`` with ``u`` the ratio to the rollout policy. With
  ``A >= 0`` a token contributes ``u A`` while ``u <= 1 + eps`` and nothing (no gradient) above: the
  ``I(A)`` of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KL_ESTIMATORS = ("k1", "k3")


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)`` from per-token ``rewards`` and ``values`` ``(B, T)`` or ``(B, T, K)``."""
    if rewards.shape != values.shape or rewards.shape[:2] != mask.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask {tuple(mask.shape)} "
                         "must agree on (B, T)")
    m = mask.to(values.dtype)
    if values.ndim == 3:
        m = m.unsqueeze(-1)
    values, rewards = values * m, rewards * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages, (advantages + values) * m


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate of the policy from the reference, from the sampled tokens' log-probs."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")


@dataclass
class PolicyLoss:
    """The policy loss to minimise and what to log about it (means over the masked tokens)."""

    loss: torch.Tensor
    clipped_fraction: float
    zero_advantage_fraction: float
    approx_kl: float


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the tokens where ``mask`` is 1."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def noon_ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  *, clip_eps: float = 0.2) -> PolicyLoss:
    """Noon PPO's clipped surrogate, negated, averaged over the response tokens.

    ``advantages`` ``(B, T)`` is one advantage per token (one objective's, or PAMA's combination); negative
    values are clipped to zero first.
    """
    positive = advantages.detach().clamp_min(0.0)
    log_ratio = logprobs - old_logprobs.detach()
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * positive, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * positive)
    with torch.no_grad():
        clipped = masked_mean(((ratio > 1.0 + clip_eps) & (positive > 0)).to(ratio.dtype), mask)
        zero = masked_mean((positive == 0).to(ratio.dtype), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return PolicyLoss(-masked_mean(surrogate, mask), float(clipped), float(zero), float(approx_kl))
