"""Preference routing: exact inside the anchors' hull, the nearest hull point outside (checked by a QP solver)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from moalign.hoe import route_preference

VERTICES_AND_CENTRE = np.vstack([np.eye(3), np.full(3, 1 / 3)])


def simplex_points(k):
    return st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-3).map(
        lambda v: np.asarray(v) / sum(v))


@settings(max_examples=50, deadline=None)
@given(simplex_points(3))
def test_inside_the_hull_the_preference_is_reproduced_exactly(preference):
    weights = route_preference(preference, VERTICES_AND_CENTRE)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    assert np.count_nonzero(weights) <= 3
    np.testing.assert_allclose(weights @ VERTICES_AND_CENTRE, preference, atol=1e-9)


def test_anchor_points_route_to_themselves_and_two_objectives_interpolate():
    assert route_preference(np.array([1 / 3] * 3), VERTICES_AND_CENTRE).tolist() == [0, 0, 0, 1]
    anchors = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(route_preference(np.array([0.7, 0.3]), anchors), [0.4, 0.0, 0.6], atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(simplex_points(2))
def test_outside_the_hull_it_is_the_nearest_hull_point(preference):
    anchors = np.array([[0.8, 0.2], [0.3, 0.7]])
    weights = route_preference(preference, anchors)

    def distance(w):
        return float(np.sum((w @ anchors - preference) ** 2))

    best = minimize(distance, np.full(2, 0.5), method="SLSQP", bounds=[(0, 1)] * 2,
                    constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-14})
    assert distance(weights) <= best.fun + 1e-10
