"""Merging per-objective task vectors into one for an anchor preference (HoE's multi-objective experts).

HoE merges the λ-weighted task vectors with a non-linear rule it does not define (its authors' other work
suggests a TIES/PCB-style merge). The default here is TIES (Yadav et al. 2023) on the λ-weighted task vectors:

1. trim: keep each weighted task vector's largest-magnitude ``density`` fraction of entries, zero the rest;
2. elect: the sign of each entry is the sign of the sum of the trimmed vectors;
3. disjoint mean: each entry is the λ-weighted mean of the *unweighted* trimmed entries that agree with the
   elected sign (objectives that disagree, or were trimmed, do not dilute it).

With a one-hot λ this returns that objective's trimmed task vector; where the objectives agree it returns their
λ-weighted mean. Plain weighted task arithmetic (Σ λ_i τ_i) is offered as ``"linear"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MERGE_METHODS = ("ties", "linear")


def task_arithmetic(task_vectors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ_i w_i τ_i."""
    _check(task_vectors, weights)
    return sum(float(w) * t.float() for w, t in zip(weights, task_vectors))


def trim(task_vector: torch.Tensor, density: float) -> torch.Tensor:
    """``task_vector`` with all but its ``density`` fraction of largest-magnitude entries set to zero."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    keep = max(1, round(density * task_vector.numel()))
    if keep >= task_vector.numel():
        return task_vector.clone()
    threshold = task_vector.abs().flatten().kthvalue(task_vector.numel() - keep + 1).values
    return torch.where(task_vector.abs() >= threshold, task_vector, torch.zeros_like(task_vector))


def ties_merge(task_vectors: Sequence[torch.Tensor], weights: Sequence[float], *, density: float = 0.2) -> torch.Tensor:
    """TIES merge of the λ-weighted task vectors (module docstring)."""
    _check(task_vectors, weights)
    w = torch.tensor([float(x) for x in weights])
    trimmed = torch.stack([trim(float(wi) * t.float(), density) for wi, t in zip(w, task_vectors)])
    elected = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    shape = (-1,) + (1,) * (trimmed.dim() - 1)
    safe_w = torch.where(w > 0, w, torch.ones_like(w)).view(shape)
    unweighted = trimmed / safe_w
    mass = (agree * w.view(shape)).sum(dim=0)
    total = (agree * w.view(shape) * unweighted).sum(dim=0)
    return torch.where(mass > 0, total / mass.clamp_min(1e-30), torch.zeros_like(total))


def merge_task_vectors(task_vectors: Sequence[torch.Tensor], weights: Sequence[float], *, method: str = "ties",
                       density: float = 0.2) -> torch.Tensor:
    """Merge with ``method`` (``"ties"`` or ``"linear"``)."""
    if method == "ties":
        return ties_merge(task_vectors, weights, density=density)
    if method == "linear":
        return task_arithmetic(task_vectors, weights)
    raise ValueError(f"unknown merge method {method!r}; use one of {MERGE_METHODS}")


def _check(task_vectors: Sequence[torch.Tensor], weights: Sequence[float]) -> None:
    if not task_vectors or len(task_vectors) != len(weights):
        raise ValueError(f"{len(task_vectors)} task vectors for {len(weights)} weights")
    shapes = {tuple(t.shape) for t in task_vectors}
    if len(shapes) != 1:
        raise ValueError(f"task vectors of different shapes {sorted(shapes)} cannot be merged")
    if any(float(w) < 0 for w in weights):
        raise ValueError(f"merge weights must be non-negative, got {list(weights)}")
