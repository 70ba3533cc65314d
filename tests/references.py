"""Independent references for tests: brute force over supports and scipy's SLSQP on the simplex."""

import itertools

import numpy as np
from scipy.optimize import minimize


def brute_force_min_norm(gram):
    """Try every support; on each, solve the equality-constrained QP exactly; keep the best feasible point."""
    k = gram.shape[0]
    best, best_value = None, np.inf
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            idx = list(support)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = 2 * gram[np.ix_(idx, idx)]
            kkt[:size, size] = kkt[size, :size] = 1
            rhs = np.zeros(size + 1)
            rhs[size] = 1
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (sol < -1e-12).any():
                continue
            alpha = np.zeros(k)
            alpha[idx] = np.clip(sol, 0, None)
            alpha /= alpha.sum()
            value = alpha @ gram @ alpha
            if value < best_value:
                best, best_value = alpha, value
    return best, best_value


def slsqp_on_simplex(objective, k, x0=None, jac=None):
    """Minimise ``objective`` over the probability simplex with SLSQP (give ``jac`` for full accuracy)."""
    result = minimize(
        objective,
        jac=jac,
        x0=np.full(k, 1.0 / k) if x0 is None else x0,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return result.x, result.fun
