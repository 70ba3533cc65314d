"""Confidence intervals shared by evaluation and training reports: bootstrap over prompts, Wilson for proportions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

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


def wilson_interval(successes: int, trials: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (sound near 0 and 1, unlike the normal approximation).

    ``wilson_interval(k, n, level=0.90).low`` is the one-sided 95 % lower bound."""
    if trials < 1:
        raise ValueError(f"a proportion needs at least 1 trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level)
