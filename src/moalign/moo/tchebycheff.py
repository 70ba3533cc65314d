"""Smooth Tchebycheff scalarisation by online mirror descent over objective weights (HoE's router objective).

Tchebycheff maximises ``min_i λ_i (R_i − z_i*)`` (``z*`` the ideal point: each objective's best achievable
score), which reaches every Pareto-optimal point, unlike a weighted sum. Its min is not smooth; following
OMD-TCH (Liu et al. 2024), a distribution ``w`` over objectives plays the minimising side: the policy maximises
``Σ_i w_i λ_i (R_i − z_i*)`` while, after each batch, ``w_i ∝ w_i exp(−η λ_i (R̄_i − z_i*))`` shifts weight to
the objectives furthest below their ideal (an exponentiated-gradient step, regret O(√(log K / T))).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class OnlineTchebycheff:
    """The OMD weights of smooth Tchebycheff.

    Args:
        preference: λ, non-negative, one per objective.
        ideal: z*, one per objective (the best single-objective scores).
        step_size: η of the exponentiated-gradient step.
    """

    def __init__(self, preference: Sequence[float], ideal: Sequence[float], step_size: float = 1.0):
        self.preference = np.asarray(preference, dtype=np.float64)
        self.ideal = np.asarray(ideal, dtype=np.float64)
        if self.ideal.shape != self.preference.shape:
            raise ValueError(f"ideal point has {self.ideal.size} values for {self.preference.size} objectives")
        if not np.all(np.isfinite(self.ideal)):
            raise ValueError(f"ideal point must be finite, got {self.ideal.tolist()}")
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.step_size = float(step_size)
        self.weights = np.full(self.preference.size, 1.0 / self.preference.size)

    def reward_weights(self) -> np.ndarray:
        """``w ∘ λ``: what each objective's reward (or advantage) is multiplied by this step."""
        return self.weights * self.preference

    def scalarise(self, rewards: np.ndarray) -> np.ndarray:
        """``Σ_i w_i λ_i (R_i − z_i*)`` per row of ``(N, K)`` rewards."""
        return (np.asarray(rewards, dtype=np.float64) - self.ideal) @ self.reward_weights()

    def update(self, mean_rewards: Sequence[float]) -> np.ndarray:
        """One mirror-descent step from the batch's mean reward per objective; returns the new weights."""
        gaps = self.preference * (np.asarray(mean_rewards, dtype=np.float64) - self.ideal)
        logits = np.log(self.weights) - self.step_size * gaps
        logits -= logits.max()
        self.weights = np.exp(logits) / np.exp(logits).sum()
        return self.weights

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = np.asarray(state["weights"], dtype=np.float64)
