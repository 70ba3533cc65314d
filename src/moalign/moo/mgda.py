"""MGDA and its normalised variants, MGDA-Decoupled among them, as one min-norm rule.

Weights ``a`` come from the min-norm point of the convex hull of the *normalised* gradients
``g_i / n_i``; on the Gram this is min-norm on ``M_ij = G_ij / (n_i n_j)``. By default they are then
applied to the *raw* gradients, ``d = sum_i a_i g_i`` (``apply_to: raw``, as in Sener & Koltun's code
and the MGDA-Decoupled method card): the step keeps the scale of the objectives' own gradients, so the
learning rate means what it means for single-objective DPO. ``apply_to: normalised`` applies them to
the normalised gradients instead, ``d = sum_i a_i g_i / n_i`` (the min-norm point itself, the likely
form of MGDA-Normalised in the MGDA-Decoupled paper); the returned weights are then ``a_i / n_i``, so
the update is still ``sum_i w_i g_i``. The normaliser ``n_i``:

* ``none`` (MGDA, Desideri 2012): ``n_i = 1``; ``d`` is a common descent direction whenever the point
  is not Pareto-stationary.
* ``l2`` (MGDA-Normalised): ``n_i = ||g_i||``; every objective counts equally regardless of scale.
* ``loss`` (MGDA-Decoupled, arXiv 2604.20685): ``n_i = max(L_i, eps)``, the current mini-batch loss;
  an objective far from convergence (large loss) has a shorter normalised gradient and so gets more
  weight.
* ``loss+l2``: ``n_i = L_i ||g_i||`` (Sener & Koltun's ``loss+``).

Dividing by the loss is not new: Sener & Koltun (2018, "Multi-Task Learning as Multi-Objective
Optimization", Sec. 3 and their code's ``loss`` / ``loss+`` normalisation) already normalise gradients by
the task loss before the min-norm solve; MGDA-Decoupled adopts it as the default and motivates it by each
objective's convergence.

MGDA-UB (Sener & Koltun's upper bound) is MGDA fed the Gram of the gradients with respect to a shared
representation (the policy's final hidden states) instead of the parameters: ``needs`` says so, and
the trainer computes it (:func:`representation_gram`) and then runs one backward of ``sum_i a_i L_i``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from moalign.moo.base import Combination, CombinationError, CombinationRule, Needs, ObjectiveStats
from moalign.moo.min_norm import min_norm_weights

NORMALISERS = ("none", "l2", "loss", "loss+l2")


APPLY_TO = ("raw", "normalised")


class MinNormRule(CombinationRule):
    """Min-norm weights on normalised gradients, applied to the raw (default) or the normalised gradients.

    Args:
        normaliser: one of ``none``, ``l2``, ``loss``, ``loss+l2`` (see the module docstring).
        apply_to: ``raw`` or ``normalised`` (see the module docstring).
        representation: read the Gram of representation gradients (MGDA-UB) instead of parameter gradients.
        eps: lower clamp on losses and gradient norms, so a converged objective does not divide by zero.
        tol: the min-norm solver's KKT tolerance, relative to the optimum's value.
        name: the name logged for this configuration.
    """

    def __init__(self, normaliser: str = "loss", *, apply_to: str = "raw", representation: bool = False,
                 eps: float = 1e-8, tol: float = 1e-12, name: str | None = None):
        if normaliser not in NORMALISERS:
            raise ValueError(f"unknown normaliser {normaliser!r}; choose one of {NORMALISERS}")
        if apply_to not in APPLY_TO:
            raise ValueError(f"unknown apply_to {apply_to!r}; choose one of {APPLY_TO}")
        self.normaliser, self.apply_to, self.eps, self.tol = normaliser, apply_to, eps, tol
        self.name = name or f"min_norm[{normaliser}]"
        self.needs = frozenset({Needs.REPRESENTATION_GRAM if representation else Needs.GRAM}
                               | ({Needs.LOSSES} if "loss" in normaliser else set()))

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
        weights = alpha if self.apply_to == "raw" else alpha / scale
        along = gram @ weights  # <g_i, d> for the direction d = sum_i w_i g_i
        return Combination(
            weights=torch.as_tensor(weights),
            info={
                "min_norm_sq": float(weights @ along),
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
    """MGDA-UB: MGDA on the Gram of gradients w.r.t. a shared representation (the trainer computes it)."""
    return MinNormRule("none", representation=True, name="mgda_ub", **kwargs)


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
