import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moalign import PreferenceError, normalize_preference

OBJ = ("helpful", "harmless", "concise")


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=3, max_size=3).filter(lambda w: sum(w) > 1e-9))
def test_positional_vector_is_normalised_and_proportional(weights):
    out = normalize_preference(weights, OBJ)
    assert out.shape == (3,)
    assert math.isclose(out.sum(), 1.0, rel_tol=1e-12)
    assert (out >= 0).all()
    np.testing.assert_allclose(out * sum(weights), weights, rtol=1e-9, atol=1e-12)


def test_named_vector_fills_missing_with_zero():
    np.testing.assert_allclose(normalize_preference({"harmless": 3, "helpful": 1}, OBJ), [0.25, 0.75, 0.0])


@pytest.mark.parametrize(
    "pref, message",
    [
        ([1, 2], "2 weight(s) but there are 3 objectives"),
        ([1, -1, 1], "negative"),
        ([1, float("nan"), 1], "finite"),
        ([1, float("inf"), 1], "finite"),
        ([0, 0, 0], "all weights are zero"),
        ({"funny": 1}, "unknown objective name(s) ['funny']"),
        ("0.5,0.5,0", "must be numbers"),
        ([1, "x", 1], "not a number"),
    ],
)
def test_bad_vectors_are_rejected_with_a_clear_message(pref, message):
    with pytest.raises(PreferenceError) as err:
        normalize_preference(pref, OBJ)
    assert message in str(err.value)
