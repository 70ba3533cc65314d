import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.objectives import RunningWhitening


@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.integers(1, 3), st.integers(0, 99))
@settings(max_examples=80, deadline=None)
def test_running_statistics_equal_those_of_all_batches_at_once(sizes, k, seed):
    rng = np.random.default_rng(seed)
    batches = [rng.normal(3.0, 5.0, size=(n, k)) * rng.uniform(0.1, 100, size=k) for n in sizes]
    whitening = RunningWhitening(k)
    for batch in batches:
        whitening.update(batch)
    everything = np.concatenate(batches)
    assert whitening.count == len(everything)
    if len(everything):
        np.testing.assert_allclose(whitening.mean, everything.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(whitening.variance, everything.var(axis=0), rtol=1e-9, atol=1e-9)
    restored = RunningWhitening(k)
    restored.load_state_dict(whitening.state_dict())
    probe = rng.normal(size=(4, k))
    np.testing.assert_array_equal(restored(probe), whitening(probe))


def test_whitened_batch_has_zero_mean_and_unit_variance_and_nan_is_refused():
    whitening = RunningWhitening(2)
    data = np.array([[1.0, 100.0], [3.0, 300.0], [5.0, 500.0]])
    whitening.update(data)
    out = whitening(data)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="NaN or infinite"):
        whitening.update(np.array([[np.nan, 1.0]]))
