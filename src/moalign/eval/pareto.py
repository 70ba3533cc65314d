"""Front metrics for objectives that are maximised: the non-dominated subset, hypervolume, utility, spread.

Hypervolume comes from ``moocore`` (exact algorithms), never a hand-written routine. The reference
point must be strictly dominated by (worse than) every point counted; a point that does not dominate it
would contribute nothing and usually means the reference point is wrong, so it is an error.
"""

from __future__ import annotations

import numpy as np

from moalign.errors import MoalignError


class FrontError(MoalignError, ValueError):
    """Scores or a reference point that do not make a front."""


def _as_points(points: np.ndarray) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise FrontError(f"points must be a non-empty (N, K) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise FrontError("points contain NaN or infinite scores")
    return array


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (all objectives maximised; duplicates are kept)."""
    import moocore

    array = _as_points(points)
    return np.asarray(moocore.is_nondominated(array, maximise=True, keep_weakly=True), dtype=bool)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` and bounded below by ``reference`` (all objectives maximised)."""
    import moocore

    array = _as_points(points)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (array.shape[1],):
        raise FrontError(f"reference point has shape {ref.shape}, the points have {array.shape[1]} objectives")
    beyond = ~(array > ref).all(axis=1)
    if beyond.any():
        raise FrontError(
            f"{int(beyond.sum())} point(s) do not dominate the reference point {ref.tolist()} "
            f"(first: {array[np.argmax(beyond)].tolist()}); choose a reference below every score"
        )
    return float(moocore.hypervolume(array, ref=ref, maximise=True))


def weighted_utility(points: np.ndarray, preferences: np.ndarray) -> np.ndarray:
    """Per-point utility ``sum_k w_k s_k`` under the preference each point was produced for."""
    array = _as_points(points)
    prefs = np.asarray(preferences, dtype=np.float64)
    if prefs.shape != array.shape:
        raise FrontError(f"preferences have shape {prefs.shape}, points {array.shape}")
    return (array * prefs).sum(axis=1)


def spread(points: np.ndarray) -> np.ndarray:
    """Range covered on each objective by the non-dominated points (max - min per objective)."""
    front = _as_points(points)[non_dominated(points)]
    return front.max(axis=0) - front.min(axis=0)
