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
    needs = frozenset({Needs.GRAM})

    def __init__(self, c: float = 0.5, *, max_iter: int = 500, tol: float = 1e-8):
        if c < 0:
            raise ValueError(f"c must be non-negative, got {c}")
        self.c, self.max_iter, self.tol = c, max_iter, tol

    def inner_weights(self, gram: np.ndarray) -> np.ndarray:
        """The simplex weights ``w`` of the inner problem.

        Projected gradient with backtracking finds the support; every few iterations the KKT system on that
        support is solved in closed form and, when the result satisfies the KKT conditions everywhere, it is
        the exact optimum. The objective equals ``g0 . g_w + sqrt(phi) ||g_w||``: exactly 0 wherever
        ``g_w = 0``, where it is not differentiable and projected gradient converges slowly, so when the
        search ends above 0 the exact min-norm point is kept as a candidate whenever it is better.
        """
        k = gram.shape[0]
        b = gram.mean(axis=1)
        sqrt_phi = self.c * np.sqrt(max(b.mean(), 0.0))

        def objective(w: np.ndarray) -> tuple[float, np.ndarray, float]:
            gw = gram @ w
            q = max(float(w @ gw), 0.0)
            return float(b @ w) + sqrt_phi * np.sqrt(q), gw, q

        w = np.full(k, 1.0 / k)
        value, gw, q = objective(w)
        step = 1.0 / max(np.linalg.norm(gram, 2), 1e-30)
        scale = max(float(np.abs(b).max()), 1e-300)
        for iteration in range(self.max_iter):
            grad = b + sqrt_phi * gw / np.sqrt(max(q, 1e-30))
            if iteration % POLISH_EVERY == POLISH_EVERY - 1:
                exact = _stationary_on_support(gram, b, sqrt_phi, np.flatnonzero(w > 1e-9))
                if exact is not None and _is_optimal(gram, b, sqrt_phi, exact, 1e-9 * scale):
                    return exact
            while True:
                candidate = project_to_simplex(w - step * grad)
                delta = candidate - w
                trial = objective(candidate)
                if trial[0] <= value + grad @ delta + (delta @ delta) / (2 * step) or step < 1e-30:
                    break
                step *= 0.5
            w, (value, gw, q) = candidate, trial
            if np.abs(delta).sum() < self.tol:
                break
            step *= 2.0
        if value <= 0:  # the optimum is negative, in the smooth region, or exactly 0 and reached
            return w
        min_norm = min_norm_weights(gram)[0]
        return min_norm if objective(min_norm)[0] < value else w

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


#: Projected-gradient iterations between attempts to solve the KKT system on the current support exactly.
POLISH_EVERY = 4


def _stationary_on_support(gram: np.ndarray, b: np.ndarray, s: float, support: np.ndarray) -> np.ndarray | None:
    """The KKT point of ``min b.w + s sqrt(w^T G w)`` over the simplex face ``support``, in closed form.

    Stationarity ``b + s G w / n = mu 1`` with ``n = ||g_w||`` gives ``w = (mu u - v) n / s`` for
    ``u = G^-1 1`` and ``v = G^-1 b``; ``w^T G w = n^2`` makes ``mu`` the larger root of
    ``mu^2 1.u - 2 mu 1.v + b.v - s^2 = 0`` and ``sum(w) = 1`` fixes ``n``. None when the face's Gram is
    singular or the point leaves the face.
    """
    if len(support) == 0 or s <= 0:
        return None
    g = gram[np.ix_(support, support)]
    with np.errstate(all="ignore"):
        try:
            u = np.linalg.solve(g, np.ones(len(support)))
            v = np.linalg.solve(g, b[support])
        except np.linalg.LinAlgError:
            return None
        a, c = float(u.sum()), float(v.sum())
        discriminant = c * c - a * (float(b[support] @ v) - s * s)
    if not (np.isfinite(discriminant) and np.isfinite(u).all() and np.isfinite(v).all()) or a <= 0 or discriminant < 0:
        return None
    mu = (c + np.sqrt(discriminant)) / a
    if mu * a - c <= 0:
        return None
    weights = (mu * u - v) / (mu * a - c)
    if (weights < -1e-12).any():
        return None
    w = np.zeros(gram.shape[0])
    w[support] = np.clip(weights, 0.0, None)
    return w / w.sum()


def _is_optimal(gram: np.ndarray, b: np.ndarray, s: float, w: np.ndarray, tol: float) -> bool:
    """KKT on the simplex: the gradient is at least ``w . grad`` everywhere (and so equal to it on the support)."""
    gw = gram @ w
    norm = np.sqrt(max(float(w @ gw), 0.0))
    if norm <= 1e-12 * np.sqrt(max(float(np.abs(np.diag(gram)).max()), 1e-300)):
        return False  # not differentiable at g_w = 0
    grad = b + s * gw / norm
    return bool((grad >= grad @ w - tol).all())
