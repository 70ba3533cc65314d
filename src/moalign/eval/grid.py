"""Preference grids on the simplex: the fixed set of preference vectors every method is evaluated at."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moalign.preference import PreferenceError, normalize_preference


def simplex_grid(num_objectives: int, divisions: int) -> np.ndarray:
    """All preference vectors whose entries are multiples of ``1 / divisions`` (a simplex lattice).

    ``simplex_grid(2, 10)`` is the 11 points ``(0, 1), (0.1, 0.9), ..., (1, 0)``; in general there are
    ``C(divisions + K - 1, K - 1)`` points, e.g. 231 for K = 3 and 20 divisions.
    """
    if num_objectives < 1:
        raise PreferenceError(f"a grid needs at least one objective, got {num_objectives}")
    if divisions < 1:
        raise PreferenceError(f"divisions must be at least 1, got {divisions}")
    return np.array(list(_compositions(divisions, num_objectives)), dtype=np.float64) / divisions


def _compositions(total: int, parts: int):
    """Tuples of ``parts`` non-negative integers summing to ``total``, in descending lexicographic order."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def preference_grid(preferences: Sequence[Sequence[float]], objectives: Sequence[str]) -> np.ndarray:
    """A user-given list of preference vectors, each validated and normalised (wrong K is an error)."""
    if len(preferences) == 0:
        raise PreferenceError("the preference list is empty")
    rows = []
    for i, preference in enumerate(preferences):
        try:
            rows.append(normalize_preference(preference, objectives))
        except PreferenceError as exc:
            raise PreferenceError(f"preference {i}: {exc}") from None
    return np.stack(rows)
