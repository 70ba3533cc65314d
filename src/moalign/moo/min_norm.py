"""The exact minimum-norm point of the convex hull of K vectors, from their Gram matrix alone.

``min_{a in simplex} a^T G a`` is a K-dimensional convex QP. For K = 2 it has a closed form; for larger
K a primal active-set method solves it exactly in a finite number of steps (each an equality-
constrained solve on the current support), to within the stated tolerance of the KKT conditions.
Working from the Gram means data-parallel ranks can all-reduce K x K numbers instead of K gradients.
"""

from __future__ import annotations

import numpy as np


def _solve_on_support(gram: np.ndarray, support: list[int]) -> np.ndarray:
    """Minimiser of ``a^T G a`` subject to ``sum(a) = 1`` with ``a`` zero outside ``support``.

    The KKT system is solved in the variables ``b_i = sqrt(G_ii) a_i`` (a symmetric scaling that gives
    ``G`` a unit diagonal), so gradients whose norms differ by many orders of magnitude are solved as
    accurately as equal ones. It may be singular (parallel gradients); least squares then returns one
    minimiser.
    """
    s = len(support)
    sub = gram[np.ix_(support, support)]
    diag = np.diag(sub)
    out = np.zeros(gram.shape[0])
    if not diag.max() > 0:  # only zero vectors: every point of their hull is the origin
        out[support] = 1.0 / s
        return out
    d = 1.0 / np.sqrt(np.maximum(diag, max(diag.max() * 1e-30, 1e-200)))
    kkt = np.zeros((s + 1, s + 1))
    kkt[:s, :s] = 2.0 * sub * np.outer(d, d)
    kkt[:s, s] = kkt[s, :s] = d / d.max()
    rhs = np.zeros(s + 1)
    rhs[s] = 1.0 / d.max()
    solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    out[support] = d * solution[:s]
    return out


def min_norm_weights(gram: np.ndarray, *, tol: float = 1e-12, max_iter: int | None = None) -> tuple[np.ndarray, int]:
    """Weights ``a`` on the simplex minimising ``a^T G a``, and the number of active-set iterations.

    Args:
        gram: symmetric positive semi-definite ``(K, K)`` matrix.
        tol: tolerance of the optimality check ``(G a)_j >= a^T G a`` for every j, relative to the value
            ``a^T G a`` itself (plus the round-off of that check), so that the answer is accurate when
            gradient norms differ by orders of magnitude and the optimum is tiny.
        max_iter: cap on active-set iterations (default ``50 * K``); reaching it raises ``RuntimeError``.
    """
    g = np.asarray(gram, dtype=np.float64)
    k = g.shape[0]
    if g.shape != (k, k) or k == 0:
        raise ValueError(f"gram must be a non-empty square matrix, got shape {g.shape}")
    if k == 1:
        return np.ones(1), 0
    # The weights do not change when G is scaled; scaling to unit diagonal keeps the KKT solves well-posed
    # for gradients of any magnitude (1e-20 or 1e20).
    largest = float(np.max(np.abs(np.diag(g))))
    g = 0.5 * (g + g.T) / (largest if largest > 0 else 1.0)
    if k == 2:
        return _two_point(g), 0
    start = int(np.argmin(np.diag(g)))
    alpha = np.zeros(k)
    alpha[start] = 1.0
    support = [start]
    for iteration in range(1, (max_iter or 50 * k) + 1):
        target = _solve_on_support(g, support)
        if (target[support] >= -tol).all():
            alpha = np.clip(target, 0.0, None)
            alpha /= alpha.sum()
            grad = g @ alpha
            value = alpha @ grad
            outside = [j for j in range(k) if j not in support]
            if not outside:
                return alpha, iteration
            violation = grad[outside] - value
            # Round-off of the check scales with the gradients in play: tiny when a sits on tiny gradients.
            scale = np.abs(g[outside]) @ alpha + np.max(np.diag(g)[support])
            round_off = 64 * np.finfo(np.float64).eps * scale
            worst = int(np.argmin(violation + tol * value + round_off))
            if violation[worst] >= -(tol * value + round_off[worst]):
                return alpha, iteration
            support.append(outside[worst])
        else:
            # Walk from the feasible point towards the target until a weight reaches zero; drop it.
            step = min(alpha[i] / (alpha[i] - target[i]) for i in support if target[i] < 0)
            alpha = alpha + step * (target - alpha)
            support = [i for i in support if alpha[i] > tol]
            alpha[[i for i in range(k) if i not in support]] = 0.0
            alpha /= alpha.sum()
    raise RuntimeError(f"min-norm active set did not converge in {max_iter or 50 * k} iterations")


def _two_point(g: np.ndarray) -> np.ndarray:
    """Closed form for K = 2: the point of the segment [g_1, g_2] nearest the origin."""
    denom = g[0, 0] + g[1, 1] - 2.0 * g[0, 1]
    if denom <= 1e-300:  # identical vectors: every point of the segment is the same
        return np.array([0.5, 0.5])
    a = float(np.clip((g[1, 1] - g[0, 1]) / denom, 0.0, 1.0))
    return np.array([a, 1.0 - a])
