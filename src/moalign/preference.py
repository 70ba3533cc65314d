"""Preference vectors: one non-negative weight per named objective, normalised to sum to one.

Every entry point (trainers, routing, the server) goes through :func:`normalize_preference`, so a
bad vector fails the same way everywhere, with a message that says what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from moalign.errors import MoalignError


class PreferenceError(MoalignError, ValueError):
    """A preference vector that cannot be used: wrong length, unknown name, negative, NaN, all zero."""


def normalize_preference(
    preference: Sequence[float] | Mapping[str, float] | np.ndarray,
    objectives: Sequence[str],
) -> np.ndarray:
    """Return ``preference`` as a float64 array over ``objectives`` that sums to one.

    A sequence is read by position and must have one entry per objective. A mapping is read by
    name; objectives it does not mention get weight zero, and a name that is not an objective is an
    error. Weights must be finite and non-negative, and not all zero.
    """
    names = list(objectives)
    if not names:
        raise PreferenceError("no objectives were given, so no preference vector can be formed")
    if isinstance(preference, Mapping):
        unknown = [k for k in preference if k not in names]
        if unknown:
            raise PreferenceError(f"unknown objective name(s) {unknown}; the objectives are {names}")
        values = [preference.get(name, 0.0) for name in names]
    elif isinstance(preference, (str, bytes)):
        raise PreferenceError(f"a preference vector must be numbers, got the string {preference!r}")
    else:
        values = list(np.asarray(preference, dtype=object).reshape(-1))
        if len(values) != len(names):
            raise PreferenceError(
                f"preference vector has {len(values)} weight(s) but there are {len(names)} objectives {names}"
            )
    weights = np.empty(len(names), dtype=np.float64)
    for i, (name, value) in enumerate(zip(names, values)):
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise PreferenceError(f"weight for {name!r} is not a number: {value!r}") from None
        if math.isnan(w) or math.isinf(w):
            raise PreferenceError(f"weight for {name!r} is {w}; weights must be finite")
        if w < 0:
            raise PreferenceError(f"weight for {name!r} is negative ({w}); weights must be >= 0")
        weights[i] = w
    total = weights.sum()
    if total <= 0:
        raise PreferenceError(f"all weights are zero; give at least one objective of {names} a positive weight")
    return weights / total
