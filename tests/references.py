"""Independent references for tests: exact min-norm by enumeration in high precision, scipy's SLSQP on the simplex."""

import itertools

import numpy as np
from scipy.optimize import minimize


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


def exact_min_norm(gram, digits=60):
    """The min-norm weights by enumeration of supports, each KKT system solved in ``digits``-digit arithmetic
    (mpmath): independent of float64 round-off, so it is exact for badly scaled Grams too."""
    import mpmath

    with mpmath.workdps(digits):
        g = mpmath.matrix(gram.tolist())
        k = gram.shape[0]
        best, best_value = None, None
        for size in range(1, k + 1):
            for support in itertools.combinations(range(k), size):
                kkt = mpmath.matrix(size + 1, size + 1)
                for a, i in enumerate(support):
                    for b, j in enumerate(support):
                        kkt[a, b] = 2 * g[i, j]
                    kkt[a, size] = kkt[size, a] = 1
                rhs = mpmath.matrix([0] * size + [1])
                try:
                    sol = mpmath.lu_solve(kkt, rhs)
                except (ZeroDivisionError, TypeError):  # singular KKT system (parallel or zero vectors)
                    continue
                if any(sol[a] < 0 for a in range(size)):
                    continue
                alpha = [mpmath.mpf(0)] * k
                for a, i in enumerate(support):
                    alpha[i] = sol[a]
                value = sum(alpha[i] * g[i, j] * alpha[j] for i in range(k) for j in range(k))
                if best_value is None or value < best_value:
                    best, best_value = alpha, value
        return np.array([float(a) for a in best]), float(best_value)
