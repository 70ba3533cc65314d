"""Win/tie/loss counting against reference responses (the intervals live in ``moalign.stats``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moalign.stats import Interval, bootstrap_interval

__all__ = ["Interval", "WinRate", "bootstrap_interval", "count_outcomes", "outcomes"]


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
