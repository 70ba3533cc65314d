"""The interfaces every combination rule implements.

A **weight rule** (:class:`CombinationRule`) turns one optimizer step's per-objective statistics into
K weights; the trainer's update is then ``sum_i w_i grad L_i`` on every path (exact Gram, cached
weights, accumulation, data parallel). A rule declares in ``needs`` the set of statistics it reads, so
a trainer computes no more than that: ``LOSSES`` (the step's per-objective losses), ``GRAM`` (the K x K
inner products of the per-objective parameter gradients), ``REPRESENTATION_GRAM`` (the same for
gradients with respect to a shared representation: MGDA-UB). A rule needing none of them (``linear``)
depends on the preference alone.

An **advantage rule** (:class:`AdvantageRule`, PAMA) works inside an RL loss instead: it maps
per-objective advantages, item by item, to one combined advantage, with diagnostics for the log.
"""

from __future__ import annotations

import dataclasses
import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from moalign.errors import MoalignError


class Needs(enum.Enum):
    """A statistic a weight rule reads."""

    LOSSES = "losses"
    GRAM = "gram"
    REPRESENTATION_GRAM = "representation_gram"


GRAM_NEEDS = frozenset({Needs.GRAM, Needs.REPRESENTATION_GRAM})


class CombinationError(MoalignError, ValueError):
    """Inputs a rule cannot combine: NaN or infinite values, wrong shapes, missing inputs."""


@dataclass
class ObjectiveStats:
    """Per-objective inputs of one step; fill what the rule's ``needs`` asks for.

    Attributes:
        losses: shape ``(K,)``, the current per-objective losses (detached).
        gram: shape ``(K, K)``, ``G_ij = <g_i, g_j>`` of the per-objective gradients.
        grads: shape ``(K, d)``, the per-objective gradients (only rules needing directions use it).
        preference: shape ``(K,)``, a normalised preference vector, or ``None`` for uniform.
        present: shape ``(K,)`` bool, which objectives have data in this step (``None``: all). Absent
            objectives get weight 0; Gram-based rules solve on the present ones only (an absent
            objective's zero gradient would otherwise take all the min-norm weight).
    """

    losses: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    grads: torch.Tensor | None = None
    preference: torch.Tensor | None = None
    present: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> ObjectiveStats:
        """The same statistics restricted to the objectives in ``index``."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return ObjectiveStats(
            losses=pick(self.losses),
            gram=None if self.gram is None else self.gram[index][:, index],
            grads=pick(self.grads),
            preference=None if self.preference is None else self.preference[index] / self.preference[index].sum(),
        )

    @property
    def num_objectives(self) -> int:
        for value in (self.losses, self.gram, self.grads, self.preference, self.present):
            if value is not None:
                return value.shape[0]
        raise CombinationError("no per-objective input was given")


@dataclass
class Combination:
    """A rule's answer.

    Attributes:
        weights: shape ``(K,)``; the update is ``sum_i weights[i] * grad L_i``.
        direction: shape ``(d,)`` when the rule had the gradients, else ``None``.
        info: numbers worth logging (objective value, solver iterations, ...).
    """

    weights: torch.Tensor
    direction: torch.Tensor | None = None
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
    """Base class of weight rules: subclasses set ``name`` and ``needs`` and implement :meth:`weights`."""

    name: str = "rule"
    needs: frozenset[Needs] = frozenset()

    @property
    def needs_gram(self) -> bool:
        """Whether the rule reads a Gram matrix (of parameter or representation gradients)."""
        return bool(self.needs & GRAM_NEEDS)

    def combine(self, stats: ObjectiveStats) -> Combination:
        """Validate ``stats``, compute the weights, and form the direction when gradients are given."""
        for key in ("losses", "gram", "grads", "preference"):
            check_finite(key, getattr(stats, key))
        if self.needs_gram and stats.gram is None:
            if stats.grads is None:
                raise CombinationError(f"rule {self.name!r} needs gram (or grads to compute it from)")
            stats = dataclasses.replace(stats, gram=gram_matrix(stats.grads))
        if Needs.LOSSES in self.needs and stats.losses is None:
            raise CombinationError(f"rule {self.name!r} needs losses")
        present = stats.present
        if present is not None and not bool(present.any()):
            raise CombinationError(f"rule {self.name!r}: no objective has data in this step")
        if present is None or bool(present.all()):
            result = self.weights(stats)
        elif self.needs_gram:
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
        return f"{type(self).__name__}(name={self.name!r}, needs={sorted(n.value for n in self.needs)})"


@dataclass
class AdvantageCombination:
    """An advantage rule's answer.

    Attributes:
        advantage: shape ``(...)``, the combined advantage of every item (token or sequence).
        diagnostics: numbers worth logging (never "weights": the update is not ``sum_i w_i grad L_i``).
    """

    advantage: torch.Tensor
    diagnostics: dict[str, Any] = field(default_factory=dict)


class AdvantageRule(ABC):
    """Base class of rules that combine per-objective RL advantages item by item (PAMA)."""

    name: str = "advantage_rule"

    @abstractmethod
    def combine_advantages(self, advantages: torch.Tensor, ratio: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None) -> AdvantageCombination:
        """Combine ``advantages`` ``(..., K)`` (``ratio`` and ``mask`` ``(...)``) into one advantage per item."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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
