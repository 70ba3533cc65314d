"""GroupDRO (Sagawa et al. 2020) over objectives: exponentiated-gradient weights on the losses."""

from __future__ import annotations

from typing import Any

import torch

from moalign.moo.base import Combination, CombinationRule, Needs, ObjectiveStats, uniform_or


class GroupDRO(CombinationRule):
    """``q_i <- q_i * exp(step_size * L_i)``, renormalised, each step: the worst objective gains weight.

    Objectives absent from a step (``ObjectiveStats.present``) keep their weight unchanged.

    Args:
        step_size: the exponentiated-gradient step (``eta`` in the paper).

    ``q`` starts at the preference vector (uniform when none is given) and is the rule's state.
    """

    name = "group_dro"
    needs = frozenset({Needs.LOSSES})

    def __init__(self, step_size: float = 0.01):
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.step_size = step_size
        self.q: torch.Tensor | None = None

    def weights(self, stats: ObjectiveStats) -> Combination:
        losses = stats.losses.detach().to(torch.float64).cpu()
        if self.q is None or self.q.shape != losses.shape:
            self.q = uniform_or(stats.preference, losses.shape[0]).clone()
        # Objectives without data this step keep their weight; the others share the rest of the mass.
        present = torch.ones_like(losses, dtype=torch.bool) if stats.present is None else stats.present.cpu()
        scaled = self.q[present] * torch.exp(self.step_size * (losses[present] - losses[present].max()))
        q = self.q.clone()
        q[present] = scaled / scaled.sum() * self.q[present].sum()
        self.q = q
        return Combination(weights=self.q.clone())

    def state_dict(self) -> dict[str, Any]:
        return {"q": None if self.q is None else self.q.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q = None if state.get("q") is None else torch.tensor(state["q"], dtype=torch.float64)
