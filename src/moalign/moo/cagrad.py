"""CAGrad (Liu et al. 2021), conflict-averse gradient descent, computed from the Gram matrix.

With ``g0`` the average gradient and ``phi = c^2 ||g0||^2``, CAGrad solves
``min_{w in simplex} w^T G 1/K + sqrt(phi) * sqrt(w^T G w)`` and updates along
``d = g0 + sqrt(phi) / ||g_w|| * g_w``, divided by ``1 + c^2``. Both terms are linear in the raw
gradients, so the rule returns weights ``(1/K + lambda w) / (1 + c^2)``.
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.moo.base import Combination, CombinationRule, Needs, ObjectiveStats
from moalign.moo.min_norm import min_norm_weights
from moalign.moo.simplex import project_to_simplex


class CAGrad(CombinationRule):
    """Conflict-averse gradients.

    Args:
        c: how far (relative to ``||g0||``) the update may move from the average gradient to help the
            worst objective; ``c = 0`` is plain averaging.
        max_iter: projected-gradient iterations of the inner simplex problem (a convex problem in K
            variables; the step size is found by backtracking).
        tol: stop when an iteration moves ``w`` by less than this (L1 distance).
    """

    name = "cagrad"
    needs = Needs.GRAM

    def __init__(self, c: float = 0.5, *, max_iter: int = 500, tol: float = 1e-8):
        if c < 0:
            raise ValueError(f"c must be non-negative, got {c}")
        self.c, self.max_iter, self.tol = c, max_iter, tol

    def inner_weights(self, gram: np.ndarray) -> np.ndarray:
        """The simplex weights ``w`` of the inner problem, by projected gradient with backtracking.

        The objective equals ``g0 . g_w + sqrt(phi) ||g_w||``, so it is exactly 0 wherever ``g_w = 0``, where it is
        not differentiable and projected gradient converges slowly; the exact min-norm point is therefore kept
        as a candidate whenever it is better.
        """
        k = gram.shape[0]
        b = gram.mean(axis=1)
        sqrt_phi = self.c * np.sqrt(max(b.mean(), 0.0))

        def objective(w: np.ndarray) -> float:
            return float(b @ w + sqrt_phi * np.sqrt(max(w @ gram @ w, 0.0)))

        w = np.full(k, 1.0 / k)
        step = 1.0 / max(np.linalg.norm(gram, 2), 1e-30)
        for _ in range(self.max_iter):
            value = objective(w)
            grad = b + sqrt_phi * (gram @ w) / np.sqrt(max(w @ gram @ w, 1e-30))
            while True:
                candidate = project_to_simplex(w - step * grad)
                delta = candidate - w
                if objective(candidate) <= value + grad @ delta + (delta @ delta) / (2 * step) or step < 1e-30:
                    break
                step *= 0.5
            w = candidate
            if np.abs(delta).sum() < self.tol:
                break
            step *= 2.0
        min_norm = min_norm_weights(gram)[0]
        return min_norm if objective(min_norm) < objective(w) else w

    def weights(self, stats: ObjectiveStats) -> Combination:
        gram = stats.gram.detach().to(torch.float64).cpu().numpy()
        k = gram.shape[0]
        g0_sq = gram.mean()
        if g0_sq <= 0 or self.c == 0:
            return Combination(weights=torch.full((k,), 1.0 / k, dtype=torch.float64))
        w = self.inner_weights(gram)
        gw_norm = np.sqrt(max(w @ gram @ w, 1e-30))
        lam = self.c * np.sqrt(g0_sq) / gw_norm
        weights = (np.full(k, 1.0 / k) + lam * w) / (1.0 + self.c**2)
        return Combination(weights=torch.as_tensor(weights), info={"inner_weights": w.tolist()})
