"""Task-SVD against exact low-rank constructions and TIES against a hand-worked example."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.hoe import merge_task_vectors, task_arithmetic, task_svd, ties_merge, trim


def low_rank(d_out, d_in, singular_values, seed):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(d_out, len(singular_values), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_in, len(singular_values), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v.T


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 12), st.integers(3, 12), st.integers(1, 3), st.integers(0, 10_000))
def test_full_rank_recovers_a_low_rank_task_vector_exactly(d_out, d_in, true_rank, seed):
    values = [float(5 - i) for i in range(min(true_rank, d_out, d_in))]
    delta = low_rank(d_out, d_in, values, seed)
    a, b, error = task_svd(delta, rank=len(values))
    assert a.shape == (len(values), d_in) and b.shape == (d_out, len(values))
    torch.testing.assert_close(b @ a, delta, rtol=0, atol=1e-10)
    assert error < 1e-7


def test_lower_rank_has_the_expected_error_and_energy_picks_the_rank():
    values = [4.0, 3.0, 2.0, 1.0]
    delta = low_rank(10, 8, values, seed=1)
    a, b, error = task_svd(delta, rank=2)
    expected = math.sqrt((2.0**2 + 1.0**2) / sum(v**2 for v in values))
    assert error == pytest.approx(expected, rel=1e-9)
    assert float(torch.linalg.norm(delta - b @ a) / torch.linalg.norm(delta)) == pytest.approx(expected, rel=1e-9)
    # 16 + 9 = 25 of 30 (83 %): 0.8 needs two components, 0.9 three.
    assert task_svd(delta, energy=0.8)[0].shape[0] == 2
    assert task_svd(delta, energy=0.9)[0].shape[0] == 3
    assert task_svd(torch.zeros(4, 3))[0].shape == (0, 3)


def test_trim_keeps_the_largest_entries():
    t = torch.tensor([0.1, -0.9, 0.5, -0.2, 0.3])
    assert trim(t, 0.4).tolist() == pytest.approx([0.0, -0.9, 0.5, 0.0, 0.0])


def test_ties_against_a_hand_worked_example():
    t1 = torch.tensor([1.0, -2.0, 3.0, 0.5])
    t2 = torch.tensor([-3.0, -1.0, 1.0, 0.1])
    # density 0.75 keeps three of four entries: t1 -> [1, -2, 3, 0], t2 -> [-3, -1, 1, 0].
    # weights (0.5, 0.5): weighted sums [-1, -1.5, 2, 0] elect signs [-, -, +, 0];
    # entry 0: only t2 agrees -> -3; entry 1: both -> mean(-2, -1) = -1.5; entry 2: both -> mean(3, 1) = 2.
    merged = ties_merge([t1, t2], [0.5, 0.5], density=0.75)
    assert merged.tolist() == pytest.approx([-3.0, -1.5, 2.0, 0.0])
    # weights (0.8, 0.2): sums [0.2, -1.8, 2.6, 0] -> entry 0 elects +, so t1's 1.0 alone; entry 1 weighted mean
    # (0.8 * -2 + 0.2 * -1) / 1.0 = -1.8; entry 2 (0.8 * 3 + 0.2 * 1) = 2.6.
    merged = ties_merge([t1, t2], [0.8, 0.2], density=0.75)
    assert merged.tolist() == pytest.approx([1.0, -1.8, 2.6, 0.0])


def test_one_hot_ties_is_the_trimmed_task_vector_and_linear_is_arithmetic():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(6, 5, generator=g) for _ in range(3)]
    torch.testing.assert_close(ties_merge(ts, [0, 1, 0], density=0.3), trim(ts[1], 0.3))
    torch.testing.assert_close(merge_task_vectors(ts, [0.2, 0.3, 0.5], method="linear"),
                               0.2 * ts[0] + 0.3 * ts[1] + 0.5 * ts[2])
    torch.testing.assert_close(task_arithmetic(ts, [1, 1, 1]), ts[0] + ts[1] + ts[2])
    with pytest.raises(ValueError, match="unknown merge"):
        merge_task_vectors(ts, [1, 1, 1], method="dare")
    with pytest.raises(ValueError, match="non-negative"):
        ties_merge(ts, [1, -1, 1])
    with pytest.raises(ValueError, match="shapes"):
        ties_merge([ts[0], torch.zeros(2)], [1, 1])


def test_merged_expert_at_a_vertex_is_that_expert():
    from moalign.hoe import Expert, merged_expert

    g = torch.Generator().manual_seed(3)
    experts = [Expert(f"e{k}", np.eye(2)[k].tolist(), {"m": (torch.randn(2, 5, generator=g), torch.randn(4, 2, generator=g))})
               for k in range(2)]
    anchor = merged_expert("mid", [1.0, 0.0], experts, method="linear")
    torch.testing.assert_close(anchor.delta("m"), experts[0].delta("m"), rtol=1e-5, atol=1e-6)
    middle = merged_expert("mid", [0.5, 0.5], experts, method="linear", rank=4)
    torch.testing.assert_close(middle.delta("m"), 0.5 * experts[0].delta("m") + 0.5 * experts[1].delta("m"),
                               rtol=1e-5, atol=1e-5)
    assert middle.preference == [0.5, 0.5] and middle.errors["m"] < 1e-6
