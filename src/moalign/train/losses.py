"""Per-objective DPO losses that share one forward pass.

All objectives compare the same two responses, so they share the implicit reward margin
``h_b = (log pi(a_b) - log ref(a_b)) - (log pi(b_b) - log ref(b_b))``; only the label signs differ.
Objective k's loss averages over the pairs it labels strictly (ties and absent labels are masked):

* ``sigmoid`` (DPO, Rafailov et al. 2023): ``-log sigmoid(beta * s_kb * h_b)``
* ``ipo`` (Azar et al. 2023): ``(s_kb * h_b - 1 / (2 beta))^2``
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class ObjectiveLosses:
    """Per-objective results for one batch.

    Attributes:
        losses: ``(K,)`` mean loss over each objective's strictly labelled pairs (0 where it has none).
        counts: ``(K,)`` how many pairs each objective labels strictly in the batch.
        accuracy: ``(K,)`` fraction of those pairs whose implicit reward prefers the labelled response.
        margin: ``(K,)`` mean ``beta * s * h`` over those pairs.
        margins: the pair margins the losses were computed from (with their graph).
    """

    losses: torch.Tensor
    counts: torch.Tensor
    accuracy: torch.Tensor
    margin: torch.Tensor
    margins: torch.Tensor | None = None

    @property
    def present(self) -> torch.Tensor:
        """Which objectives have at least one strict label in the batch."""
        return self.counts > 0


def pair_margins(policy_logps: torch.Tensor, reference_logps: torch.Tensor) -> torch.Tensor:
    """``h`` for B pairs from the 2B sequence log-probs laid out ``[all A responses, all B responses]``."""
    n = policy_logps.shape[0] // 2
    ratio = policy_logps - reference_logps
    return ratio[:n] - ratio[n:]


def label_counts(labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
    """``(K,)`` how many pairs of a batch each objective labels strictly (ties and absent labels excluded)."""
    return (label_mask & (labels != 0)).sum(0)


def objective_losses(
    margins: torch.Tensor,
    labels: torch.Tensor,
    label_mask: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
) -> ObjectiveLosses:
    """Per-objective losses from margins, labels ``(B, K)`` in {+1, -1, 0} and their mask.

    ``margins`` is ``(B,)`` when the objectives share one margin (DPO's implicit reward) or ``(B, K)`` when each
    has its own (a reward model's heads: with ``beta=1`` and ``sigmoid`` this is the Bradley-Terry loss)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}")
    signs = labels.to(margins.dtype)
    strict = (label_mask & (labels != 0)).to(margins.dtype)
    signed = (margins if margins.ndim == 2 else margins.unsqueeze(1)) * signs  # (B, K)
    if loss_type == "sigmoid":
        per_pair = -F.logsigmoid(beta * signed)
    else:
        per_pair = (signed - 1.0 / (2.0 * beta)) ** 2
    counts = strict.sum(0)
    denom = counts.clamp_min(1.0)
    with torch.no_grad():
        accuracy = ((signed > 0).to(margins.dtype) * strict).sum(0) / denom
        margin = (beta * signed * strict).sum(0) / denom
    return ObjectiveLosses((per_pair * strict).sum(0) / denom, counts, accuracy, margin, margins)
