"""The interface every combination rule implements.

A rule turns per-objective information into K weights (and, when it has the gradients, the combined
direction). It declares what it needs, so a trainer computes no more than that: ``LOSSES`` is free,
``GRAM`` is the K x K matrix of gradient inner products (cheap to all-reduce across data-parallel
ranks; a rule given gradients instead computes it), ``ADVANTAGES`` is per-objective RL advantages.
Every rule returns weights, so the trainer can finish with one backward pass of ``sum_i w_i L_i``.
"""

from __future__ import annotations

import dataclasses
import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch


class Needs(enum.Enum):
    """What a rule consumes, from cheapest to most expensive to produce."""

    LOSSES = "losses"
    GRAM = "gram"
    ADVANTAGES = "advantages"


class CombinationError(ValueError):
    """Inputs a rule cannot combine: NaN or infinite values, wrong shapes, missing inputs."""


@dataclass
class ObjectiveStats:
    """Per-objective inputs of one step; fill what the rule's ``needs`` asks for.

    Attributes:
        losses: shape ``(K,)``, the current per-objective losses (detached).
        gram: shape ``(K, K)``, ``G_ij = <g_i, g_j>`` of the per-objective gradients.
        grads: shape ``(K, d)``, the per-objective gradients (only rules needing directions use it).
        advantages: shape ``(..., K)``, per-objective advantages (PAMA).
        preference: shape ``(K,)``, a normalised preference vector, or ``None`` for uniform.
        present: shape ``(K,)`` bool, which objectives have data in this step (``None``: all). Absent
            objectives get weight 0; Gram-based rules solve on the present ones only (an absent
            objective's zero gradient would otherwise take all the min-norm weight).
    """

    losses: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    grads: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    preference: torch.Tensor | None = None
    present: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> ObjectiveStats:
        """The same statistics restricted to the objectives in ``index``."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return ObjectiveStats(
            losses=pick(self.losses),
            gram=None if self.gram is None else self.gram[index][:, index],
            grads=pick(self.grads),
            advantages=None if self.advantages is None else self.advantages[..., index],
            preference=None if self.preference is None else self.preference[index] / self.preference[index].sum(),
        )

    @property
    def num_objectives(self) -> int:
        for value in (self.losses, self.gram, self.grads, self.preference):
            if value is not None:
                return value.shape[0]
        if self.advantages is not None:
            return self.advantages.shape[-1]
        raise CombinationError("no per-objective input was given")


@dataclass
class Combination:
    """A rule's answer.

    Attributes:
        weights: shape ``(K,)``; the update is ``sum_i weights[i] * grad L_i``.
        direction: shape ``(d,)`` when the rule had the gradients, else ``None``.
        advantage: for advantage-based rules, the combined per-item advantage.
        info: numbers worth logging (objective value, solver iterations, ...).
    """

    weights: torch.Tensor
    direction: torch.Tensor | None = None
    advantage: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_finite(name: str, value: torch.Tensor | None) -> None:
    """Raise :class:`CombinationError` naming ``name`` and the first objective with a non-finite entry."""
    if value is None:
        return
    bad = ~torch.isfinite(value)
    if bad.any():
        index = bad.nonzero()[0].tolist()
        raise CombinationError(f"{name} has a non-finite value {value[tuple(index)].item()} at index {index}")


class CombinationRule(ABC):
    """Base class: subclasses set ``name`` and ``needs`` and implement :meth:`weights`."""

    name: str = "rule"
    needs: Needs = Needs.LOSSES

    def combine(self, stats: ObjectiveStats) -> Combination:
        """Validate ``stats``, compute the weights, and form the direction when gradients are given."""
        for key in ("losses", "gram", "grads", "advantages", "preference"):
            check_finite(key, getattr(stats, key))
        if self.needs is Needs.GRAM and stats.gram is None:
            if stats.grads is None:
                raise CombinationError(f"rule {self.name!r} needs gram (or grads to compute it from)")
            stats = dataclasses.replace(stats, gram=gram_matrix(stats.grads))
        if getattr(stats, self.needs.value) is None:
            raise CombinationError(f"rule {self.name!r} needs {self.needs.value}")
        present = stats.present
        if present is None or bool(present.all()):
            result = self.weights(stats)
        elif self.needs is Needs.GRAM:
            index = present.nonzero()[:, 0]
            result = self.weights(stats.select(index))
            full = torch.zeros(present.shape[0], dtype=result.weights.dtype)
            full[index] = result.weights
            result.weights = full
        else:
            result = self.weights(stats)
            result.weights = result.weights * present.to(result.weights.dtype)
        if result.direction is None and stats.grads is not None:
            result.direction = result.weights.to(stats.grads.dtype) @ stats.grads
        return result

    @abstractmethod
    def weights(self, stats: ObjectiveStats) -> Combination:
        """Compute the weights (and any extra outputs) from validated ``stats``."""

    def state_dict(self) -> dict[str, Any]:
        """State carried across steps (saved in checkpoints); stateless rules return ``{}``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"rule {self.name!r} has no state but got {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={self.needs.value})"


def gram_matrix(grads: torch.Tensor) -> torch.Tensor:
    """``G = grads @ grads.T``, returned in float64 for the small solves.

    The product runs in float32 (float64 if the gradients already are), so half-precision gradients
    are not accumulated in half precision and K x d gradients are never copied to float64.
    """
    if grads.ndim != 2:
        raise CombinationError(f"grads must have shape (K, d), got {tuple(grads.shape)}")
    g = grads.detach()
    if g.dtype != torch.float64:
        g = g.to(torch.float32)
    return (g @ g.T).to(torch.float64)


def uniform_or(preference: torch.Tensor | None, k: int) -> torch.Tensor:
    """The preference vector, or uniform weights when none is given."""
    if preference is None:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    return preference.detach().to(torch.float64)
