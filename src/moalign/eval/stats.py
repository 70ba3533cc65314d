"""Bootstrap confidence intervals over prompts, and win/tie/loss counting against reference responses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


def bootstrap_interval(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap over the first axis of ``values`` (one row per prompt); seeded, so reproducible."""
    data = np.asarray(values, dtype=np.float64)
    if data.shape[0] < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {data.shape[0]}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.shape[0], size=(resamples, data.shape[0]))
    stats = np.array([statistic(data[i]) for i in index])
    alpha = (1 - level) / 2
    return Interval(float(statistic(data)), float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha)), level)


@dataclass(frozen=True)
class WinRate:
    """Wins, ties and losses of a model's responses against reference responses on one objective."""

    wins: int
    ties: int
    losses: int

    @property
    def total(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        """Wins plus half the ties, over all comparisons."""
        return (self.wins + 0.5 * self.ties) / self.total

    @property
    def net_win_rate(self) -> float:
        """(wins - losses) / total, the MGDA-Decoupled paper's headline metric."""
        return (self.wins - self.losses) / self.total


def outcomes(model_scores: np.ndarray, reference_scores: np.ndarray, tie_margin: float = 0.0) -> np.ndarray:
    """Per prompt: +1 win, 0 tie (within ``tie_margin``), -1 loss."""
    model, reference = np.asarray(model_scores, dtype=np.float64), np.asarray(reference_scores, dtype=np.float64)
    if model.shape != reference.shape:
        raise ValueError(f"{model.shape} model scores but {reference.shape} reference scores")
    if not (np.isfinite(model).all() and np.isfinite(reference).all()):
        raise ValueError("scores contain NaN or infinite values")
    diff = model - reference
    return np.where(np.abs(diff) <= tie_margin, 0, np.sign(diff)).astype(np.int8)


def count_outcomes(results: np.ndarray) -> WinRate:
    """Tally a vector of +1 / 0 / -1 outcomes."""
    results = np.asarray(results)
    return WinRate(int((results > 0).sum()), int((results == 0).sum()), int((results < 0).sum()))
