"""Preference routing (HoE level 3), parameter-free: a user's λ as a convex combination of the nearest anchors.

The ``n_nearest`` anchors closest to λ (Euclidean, in preference space) are combined with the weights ``w`` on the
simplex minimising ``‖Σ_a w_a λ_a − λ‖``. Since ``Σ w_a = 1`` this is the min-norm point of the hull of the
vectors ``λ_a − λ``, solved exactly by :func:`moalign.moo.min_norm.min_norm_weights`; it reproduces λ exactly when
λ lies in those anchors' hull and is the nearest point of the hull otherwise.
"""

from __future__ import annotations

import numpy as np

from moalign.moo.min_norm import min_norm_weights


def route_preference(preference: np.ndarray, anchors: np.ndarray, n_nearest: int | None = None) -> np.ndarray:
    """Weights over all anchors (zero outside the ``n_nearest`` nearest; default: as many as objectives).

    Args:
        preference: ``(K,)`` on the simplex (validate it with :func:`moalign.preference.normalize_preference`).
        anchors: ``(A, K)`` anchor preferences.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    preference = np.asarray(preference, dtype=np.float64)
    n = min(anchors.shape[0], n_nearest or anchors.shape[1])
    distances = np.linalg.norm(anchors - preference, axis=1)
    nearest = np.argsort(distances, kind="stable")[:n]
    weights = np.zeros(anchors.shape[0])
    if distances[nearest[0]] < 1e-12:
        weights[nearest[0]] = 1.0
        return weights
    offsets = anchors[nearest] - preference
    weights[nearest] = min_norm_weights(offsets @ offsets.T)[0]
    return weights


def route_preferences(preferences: np.ndarray, anchors: np.ndarray, n_nearest: int | None = None) -> np.ndarray:
    """:func:`route_preference` for each row of ``(B, K)`` preferences → ``(B, A)``."""
    return np.stack([route_preference(p, anchors, n_nearest) for p in np.atleast_2d(preferences)])


def nearest_experts(anchor: np.ndarray, experts: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` experts whose preferences are nearest ``anchor`` (a router expert's candidates)."""
    distances = np.linalg.norm(np.asarray(experts, dtype=np.float64) - np.asarray(anchor, dtype=np.float64), axis=1)
    return sorted(np.argsort(distances, kind="stable")[:n].tolist())
