"""The per-token pieces of multi-objective PPO: GAE per objective, group baselines, the KL penalty and its
controller, whitening, PPO's and Noon PPO's policy losses, the clipped value loss.

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
* **Group baseline** (critic-free, as GRPO): a sample's score minus the mean of its prompt's samples.
* **Adaptive KL** (Ziegler et al. 2019): the penalty's coefficient moves toward a target KL.
"""

from __future__ import annotations

from collections.abc import Callable
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


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8,
                  sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``values`` ``(B, T)`` or ``(B, T, K)`` shifted and scaled to mean 0, variance 1 over the masked tokens,
    per objective (last axis) when there are several; padding stays 0. With ``sum_over_processes`` (an
    all-reduce sum), the mean and variance are those of every process's tokens together, so N processes
    whiten their shares of a batch exactly as one process whitens the whole batch."""
    total = sum_over_processes or (lambda t: t)
    m = mask.to(values.dtype)
    if values.ndim == 3:
        m = m.unsqueeze(-1)
    count = total(m.sum((0, 1))).clamp_min(1.0)
    mean = total((values * m).sum((0, 1))) / count
    var = total((((values - mean) * m) ** 2).sum((0, 1))) / count
    return (values - mean) * torch.rsqrt(var + eps) * m


def ppo_clip_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  *, clip_eps: float = 0.2) -> PolicyLoss:
    """PPO's clipped surrogate ``min(u A, clip(u, 1 - eps, 1 + eps) A)``, negated, averaged over the response
    tokens; ``u`` is the ratio to the rollout policy and ``advantages`` ``(B, T)`` one advantage per token."""
    advantages = advantages.detach()
    log_ratio = logprobs - old_logprobs.detach()
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    with torch.no_grad():
        clipped = masked_mean((((ratio > 1.0 + clip_eps) & (advantages > 0)) |
                               ((ratio < 1.0 - clip_eps) & (advantages < 0))).to(ratio.dtype), mask)
        zero = masked_mean((advantages == 0).to(ratio.dtype), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return PolicyLoss(-masked_mean(surrogate, mask), float(clipped), float(zero), float(approx_kl))


def noon_ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  *, clip_eps: float = 0.2) -> PolicyLoss:
    """Noon PPO's clipped surrogate, negated, averaged over the response tokens.

    ``advantages`` ``(B, T)`` is one advantage per token (one objective's, or PAMA's combination); negative
    values are clipped to zero first.
    """
    return ppo_clip_loss(logprobs, old_logprobs, advantages.detach().clamp_min(0.0), mask, clip_eps=clip_eps)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               *, clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped value loss ``0.5 max((V - R)^2, (V_clip - R)^2)`` averaged over tokens (and objectives)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    per_token = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    if per_token.ndim == 3:
        per_token = per_token.mean(-1)
    return masked_mean(per_token, mask)


def group_advantages(scores: torch.Tensor, group_size: int, *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Critic-free advantages: each sample's score minus its group's mean (the samples of one prompt, which sit
    next to each other), divided by the group's standard deviation when ``scale``. ``scores`` ``(N)`` or
    ``(N, K)``; ``N`` a multiple of ``group_size``."""
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} samples do not split into groups of {group_size}")
    grouped = scores.reshape(-1, group_size, *scores.shape[1:])
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale and group_size > 1:
        centred = centred / (grouped.std(1, keepdim=True) + eps)
    return centred.reshape(scores.shape)


class KLController:
    """The coefficient of the per-token KL penalty: fixed, or adapted to a target KL as in Ziegler et al. (2019)
    and TRL: ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon`` after each batch of ``n`` samples."""

    def __init__(self, coef: float, target: float | None = None, horizon: int = 10000):
        self.value, self.target, self.horizon = coef, target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        if self.target is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
