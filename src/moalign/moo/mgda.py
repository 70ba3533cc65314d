"""MGDA and its normalised variants, MGDA-Decoupled among them, as one min-norm rule.

Weights come from the min-norm point of the convex hull of the *normalised* gradients
``g_i / n_i``; they are then applied to the *raw* gradients, ``d = sum_i a_i g_i`` (as in Sener &
Koltun's code and the MGDA-Decoupled method card). On the Gram this is min-norm on
``M_ij = G_ij / (n_i n_j)``. The normaliser ``n_i``:

* ``none`` (MGDA, Desideri 2012): ``n_i = 1``; ``d`` is a common descent direction whenever the point
  is not Pareto-stationary.
* ``l2`` (MGDA-Normalised): ``n_i = ||g_i||``; every objective counts equally regardless of scale.
* ``loss`` (MGDA-Decoupled, arXiv 2604.20685): ``n_i = max(L_i, eps)``, the current mini-batch loss;
  an objective far from convergence (large loss) has a shorter normalised gradient and so gets more
  weight.
* ``loss+l2``: ``n_i = L_i ||g_i||`` (Sener & Koltun's ``loss+``).

MGDA-UB is the same rule fed the Gram of gradients with respect to a shared representation instead
of the parameters (see :func:`moalign.moo.representation_gram`).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from moalign.moo.base import Combination, CombinationError, CombinationRule, Needs, ObjectiveStats
from moalign.moo.min_norm import min_norm_weights

NORMALISERS = ("none", "l2", "loss", "loss+l2")


class MinNormRule(CombinationRule):
    """Min-norm weights on normalised gradients, applied to the raw gradients.

    Args:
        normaliser: one of ``none``, ``l2``, ``loss``, ``loss+l2`` (see the module docstring).
        eps: lower clamp on losses and gradient norms, so a converged objective does not divide by zero.
        tol: the min-norm solver's relative KKT tolerance.
        name: the name logged for this configuration.
    """

    needs = Needs.GRAM

    def __init__(self, normaliser: str = "loss", *, eps: float = 1e-8, tol: float = 1e-12, name: str | None = None):
        if normaliser not in NORMALISERS:
            raise ValueError(f"unknown normaliser {normaliser!r}; choose one of {NORMALISERS}")
        self.normaliser, self.eps, self.tol = normaliser, eps, tol
        self.name = name or f"min_norm[{normaliser}]"

    def scales(self, stats: ObjectiveStats) -> np.ndarray:
        """The per-objective normalisers ``n_i``."""
        gram = stats.gram.detach().to(torch.float64).cpu().numpy()
        k = gram.shape[0]
        scale = np.ones(k)
        if "loss" in self.normaliser:
            if stats.losses is None:
                raise CombinationError(f"rule {self.name!r} normalises by the loss, so it needs losses")
            scale *= np.maximum(stats.losses.detach().to(torch.float64).cpu().numpy(), self.eps)
        if "l2" in self.normaliser:
            scale *= np.maximum(np.sqrt(np.clip(np.diag(gram), 0.0, None)), self.eps)
        return scale

    def weights(self, stats: ObjectiveStats) -> Combination:
        gram = stats.gram.detach().to(torch.float64).cpu().numpy()
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise CombinationError(f"gram must be square, got shape {gram.shape}")
        scale = self.scales(stats)
        start = time.perf_counter()
        alpha, iterations = min_norm_weights(gram / np.outer(scale, scale), tol=self.tol)
        solve_ms = 1e3 * (time.perf_counter() - start)
        along = gram @ alpha  # <g_i, d> for the raw direction d = sum_i alpha_i g_i
        return Combination(
            weights=torch.as_tensor(alpha),
            info={
                "min_norm_sq": float(alpha @ along),
                "min_directional_derivative": float(along.min()),
                "solver_iterations": iterations,
                "solve_ms": solve_ms,
                "gram_condition": float(np.linalg.cond(gram)) if np.any(gram) else float("inf"),
            },
        )


def mgda(**kwargs) -> MinNormRule:
    """MGDA: min-norm on raw gradients."""
    return MinNormRule("none", name="mgda", **kwargs)


def mgda_normalised(**kwargs) -> MinNormRule:
    """MGDA-Normalised: min-norm on L2-normalised gradients, applied to raw gradients."""
    return MinNormRule("l2", name="mgda_normalised", **kwargs)


def mgda_decoupled(**kwargs) -> MinNormRule:
    """MGDA-Decoupled: min-norm on loss-normalised gradients, applied to raw gradients."""
    return MinNormRule("loss", name="mgda_decoupled", **kwargs)


def mgda_ub(**kwargs) -> MinNormRule:
    """MGDA-UB: MGDA on the Gram of gradients w.r.t. a shared representation (the caller supplies it)."""
    return MinNormRule("none", name="mgda_ub", **kwargs)


def representation_gram(losses: list[torch.Tensor], representation: torch.Tensor) -> torch.Tensor:
    """Gram of the per-objective gradients with respect to a shared ``representation`` tensor.

    The cheap MGDA-UB upper bound: K backward passes through the heads only, never the trunk.
    """
    grads = [
        torch.autograd.grad(loss, representation, retain_graph=True)[0].reshape(-1).to(torch.float64)
        for loss in losses
    ]
    stacked = torch.stack(grads)
    return stacked @ stacked.T
