import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moalign import PreferenceError
from moalign.eval import (
    FrontError, bootstrap_interval, count_outcomes, hypervolume, non_dominated, outcomes, preference_grid,
    simplex_grid, spread, weighted_utility,
)


def test_simplex_grid_sizes_and_rows():
    grid = simplex_grid(2, 10)
    assert grid.shape == (11, 2) and np.allclose(grid.sum(1), 1)
    np.testing.assert_allclose(grid[0], [1.0, 0.0])
    np.testing.assert_allclose(grid[-1], [0.0, 1.0])
    assert simplex_grid(3, 20).shape == (math.comb(22, 2), 3) == (231, 3)
    assert len({tuple(r) for r in simplex_grid(4, 6)}) == math.comb(9, 3)
    with pytest.raises(PreferenceError, match="divisions"):
        simplex_grid(2, 0)


def test_user_grid_is_validated():
    np.testing.assert_allclose(preference_grid([[1, 3], [2, 2]], ["a", "b"]), [[0.25, 0.75], [0.5, 0.5]])
    with pytest.raises(PreferenceError, match=r"preference 1: preference vector has 3 weight\(s\) but there are 2"):
        preference_grid([[1, 1], [1, 1, 1]], ["a", "b"])


def test_hypervolume_by_hand_in_2d_and_3d():
    # Two boxes from the origin: [0,3]x[0,1] and [0,1]x[0,2]; union area 3 + 2 - 1 = 4.
    assert hypervolume(np.array([[3.0, 1.0], [1.0, 2.0]]), np.zeros(2)) == pytest.approx(4.0)
    # A dominated point adds nothing.
    assert hypervolume(np.array([[3.0, 1.0], [1.0, 2.0], [0.5, 0.5]]), np.zeros(2)) == pytest.approx(4.0)
    # Reference (1, 1): boxes [1,3]x[1,2] (area 2) and [1,2]x[1,4] (area 3), overlap [1,2]x[1,2] (1) -> 4.
    assert hypervolume(np.array([[3.0, 2.0], [2.0, 4.0]]), np.ones(2)) == pytest.approx(4.0)
    # 3-D: boxes 2x1x1 and 1x1x3 from the origin overlap in a unit cube: 2 + 3 - 1 = 4.
    assert hypervolume(np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 3.0]]), np.zeros(3)) == pytest.approx(4.0)


def test_hypervolume_rejects_bad_reference_points():
    with pytest.raises(FrontError, match="do not dominate the reference point"):
        hypervolume(np.array([[1.0, 1.0], [2.0, -1.0]]), np.zeros(2))
    with pytest.raises(FrontError, match="reference point has shape"):
        hypervolume(np.array([[1.0, 1.0]]), np.zeros(3))
    with pytest.raises(FrontError, match="NaN"):
        hypervolume(np.array([[1.0, np.nan]]), np.zeros(2))


def brute_force_non_dominated(points):
    keep = []
    for i, p in enumerate(points):
        dominated = any((q >= p).all() and (q > p).any() for j, q in enumerate(points) if j != i)
        keep.append(not dominated)
    return np.array(keep)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda k: arrays(np.float64, st.tuples(st.integers(1, 25), st.just(k)),
                                                   elements=st.integers(-3, 3).map(float))))
def test_non_dominated_matches_brute_force(points):
    np.testing.assert_array_equal(non_dominated(points), brute_force_non_dominated(points))


def test_utility_and_spread():
    points = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.2]])
    np.testing.assert_allclose(weighted_utility(points, np.array([[1, 0], [0.5, 0.5], [0.5, 0.5]])), [1.0, 0.5, 0.2])
    np.testing.assert_allclose(spread(points), [1.0, 1.0])


def test_bootstrap_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 200
    for t in range(trials):
        sample = rng.exponential(scale=2.0, size=60)  # skewed, true mean 2
        interval = bootstrap_interval(sample, level=0.9, resamples=500, seed=t)
        covered += interval.low <= 2.0 <= interval.high
    assert 0.82 <= covered / trials <= 0.96
    a = bootstrap_interval(np.arange(10.0), seed=3)
    assert a == bootstrap_interval(np.arange(10.0), seed=3) and a.low < a.estimate < a.high
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_interval(np.array([1.0]))


def test_win_tie_loss_counting():
    model = np.array([0.9, 0.5, 0.1, 0.52, 0.7])
    golden = np.array([0.1, 0.5, 0.8, 0.50, 0.9])
    result = count_outcomes(outcomes(model, golden, tie_margin=0.05))
    assert (result.wins, result.ties, result.losses) == (1, 2, 2)
    assert result.win_rate == pytest.approx((1 + 1) / 5)
    assert result.net_win_rate == pytest.approx(-1 / 5)
    with pytest.raises(ValueError, match="reference scores"):
        outcomes(model, golden[:3])
