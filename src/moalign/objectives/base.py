"""The scorer interface: a named function of (prompt, response) pairs, with a direction.

Scorers are used as rewards and to label preference pairs. ``score`` returns the raw measurement
(e.g. a toxicity probability); ``reward`` orients it so that higher is always better, which is what
trainers, labellers and fronts consume. Reward models trained later implement the same interface.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from moalign.errors import MoalignError


class RewardError(MoalignError, ValueError):
    """A reward source that failed, or returned NaN, infinite or the wrong number of values."""


class Scorer(ABC):
    """Scores responses to prompts on one objective.

    Attributes:
        name: the objective's name (``"sentiment"``, ``"harmless"``, ...).
        higher_is_better: whether larger raw scores are preferred.
    """

    name: str
    higher_is_better: bool = True

    @abstractmethod
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Raw scores, one float per (prompt, response)."""

    def reward(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Scores oriented so that higher is better; NaN is an error, never a silent reward."""
        if len(prompts) != len(responses):
            raise ValueError(f"{self.name}: {len(prompts)} prompts but {len(responses)} responses")
        raw = np.asarray(self.score(prompts, responses), dtype=np.float64)
        if raw.shape != (len(responses),):
            raise RewardError(f"scorer {self.name!r} returned {raw.size} value(s) of shape {raw.shape} for "
                              f"{len(responses)} responses")
        bad = np.flatnonzero(~np.isfinite(raw))
        if bad.size:
            raise RewardError(f"scorer {self.name!r} returned a non-finite score ({raw[bad[0]]}) for item {int(bad[0])}")
        return raw if self.higher_is_better else -raw

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this scorer's numbers (cached scores are reused only for the same fingerprint)."""
        return {"scorer": type(self).__name__, "name": self.name, "higher_is_better": self.higher_is_better}

    def __repr__(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        return f"{type(self).__name__}(name={self.name!r}, {direction} is better)"


class RuleScorer(Scorer):
    """A scorer from any plain function ``fn(prompt, response) -> float``."""

    def __init__(self, name: str, fn: Callable[[str, str], float], higher_is_better: bool = True):
        self.name = name
        self.fn = fn
        self.higher_is_better = higher_is_better

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        out = np.empty(len(responses), dtype=np.float64)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            value = float(self.fn(p, r))
            if math.isnan(value):
                raise RewardError(f"rule {self.name!r} returned NaN for item {i}")
            out[i] = value
        return out


def reward_statistics(
    scorers: Sequence[Scorer], prompts: Sequence[str], responses: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and max of each scorer's reward over the given responses."""
    stats = {}
    for scorer in scorers:
        values = scorer.reward(prompts, responses)
        stats[scorer.name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return stats
