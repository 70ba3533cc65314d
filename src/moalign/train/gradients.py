"""Exact per-objective gradients from one forward pass, their Gram matrix, and the combined update.

The K losses share one graph (one policy forward serves every objective), so each gradient is a
vector-Jacobian product of the same graph: ``torch.autograd.grad`` with the graph retained. Gradients
stay as per-parameter lists (no flattened K x d copy); the Gram is accumulated parameter by parameter,
which is also what a sharded rank would do on its shard before an all-reduce of the K x K result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from moalign.errors import MoalignError


class NonFiniteError(MoalignError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the message names the step and the objective."""


def per_objective_grads(
    losses: torch.Tensor, params: Sequence[torch.nn.Parameter], objectives: Sequence[int]
) -> list[list[torch.Tensor]]:
    """Gradients of ``losses[k]`` w.r.t. ``params`` for each ``k`` in ``objectives`` (unused -> zeros)."""
    out = []
    for i, k in enumerate(objectives):
        grads = torch.autograd.grad(losses[k], params, retain_graph=i < len(objectives) - 1, allow_unused=True)
        out.append([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    return out


def gram_from_grads(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    """``G_ij = <g_i, g_j>`` summed over parameters (float32 products, float64 result)."""
    k = len(grads)
    gram = torch.zeros(k, k, dtype=torch.float64)
    for tensors in zip(*grads):
        stacked = torch.stack([t.reshape(-1).to(torch.float32) for t in tensors])
        gram += (stacked @ stacked.T).to(torch.float64).cpu()
    return gram


def check_grads_finite(grads: list[list[torch.Tensor]], names: Sequence[str], step: int) -> None:
    """Raise :class:`NonFiniteError` naming the first objective whose gradient is not finite."""
    for name, tensors in zip(names, grads):
        if not all(torch.isfinite(t).all() for t in tensors):
            raise NonFiniteError(f"step {step}: the gradient of objective {name!r} is not finite")


def accumulate_direction(
    params: Sequence[torch.nn.Parameter], grads: list[list[torch.Tensor]], weights: torch.Tensor
) -> None:
    """Add ``sum_k weights[k] * grads[k]`` into each parameter's ``.grad``."""
    for j, p in enumerate(params):
        update = sum(float(w) * g[j] for w, g in zip(weights, grads))
        p.grad = update.detach().clone() if p.grad is None else p.grad + update
