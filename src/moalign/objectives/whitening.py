"""Running per-objective reward statistics, to whiten rewards on different scales before they are combined.

Rewards of different objectives live on unrelated scales (a sentiment probability, a log length, a reward
model's logit). :class:`RunningWhitening` keeps each objective's running mean and variance over every batch
seen (Chan et al.'s parallel update of Welford's algorithm, exact for any batch sizes) and maps a batch to
``(r - mean) / sqrt(var + eps)``. Its state is plain numbers, saved in RL checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningWhitening:
    """Running mean and variance per objective (``K`` columns), updated batch by batch."""

    def __init__(self, num_objectives: int, *, eps: float = 1e-8):
        self.count = 0
        self.mean = np.zeros(num_objectives)
        self.m2 = np.zeros(num_objectives)  # sum of squared deviations from the mean
        self.eps = eps

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / self.count if self.count else np.ones_like(self.mean)

    def update(self, rewards: np.ndarray) -> None:
        """Fold a batch ``(N, K)`` into the statistics."""
        batch = np.asarray(rewards, dtype=np.float64).reshape(-1, self.mean.shape[0])
        n = batch.shape[0]
        if n == 0:
            return
        if not np.isfinite(batch).all():
            raise ValueError("rewards contain NaN or infinite values")
        batch_mean = batch.mean(axis=0)
        batch_m2 = ((batch - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards`` ``(N, K)`` whitened with the current statistics."""
        return (np.asarray(rewards, dtype=np.float64) - self.mean) / np.sqrt(self.variance + self.eps)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), np.array(state["mean"]), np.array(state["m2"])
