"""Euclidean projection onto the probability simplex (Duchi et al. 2008), used by iterative rules."""

from __future__ import annotations

import numpy as np


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """The point of ``{w : w >= 0, sum(w) = 1}`` nearest to ``v``."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, v.shape[0] + 1)
    rho = np.nonzero(u - cumulative / index > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1.0), 0.0)
