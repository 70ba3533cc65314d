"""Online Tchebycheff: the weights move to the objective furthest below its ideal, and repeated steps solve the
min over objectives (checked against the exact Tchebycheff value on a finite set of policies)."""

import numpy as np
import pytest

from moalign.moo.tchebycheff import OnlineTchebycheff


def test_weight_moves_to_the_objective_furthest_below_its_ideal():
    omd = OnlineTchebycheff([0.5, 0.5], ideal=[1.0, 1.0], step_size=1.0)
    weights = omd.update([0.9, 0.2])  # objective 1 is much further below its ideal
    assert weights[1] > 0.5 > weights[0] and weights.sum() == pytest.approx(1.0)
    # exact exponentiated-gradient step: w_i ∝ exp(-η λ_i (R_i - z_i))
    expected = np.exp([-0.5 * -0.1, -0.5 * -0.8])
    np.testing.assert_allclose(weights, expected / expected.sum())
    np.testing.assert_allclose(omd.scalarise(np.array([[1.0, 1.0]])), [0.0])


def test_playing_against_a_best_responding_policy_finds_the_tchebycheff_optimum():
    # three policies with rewards (R1, R2); the Tchebycheff optimum for λ = (0.5, 0.5), z* = (1, 1) is the
    # balanced one, though a weighted sum with uniform weights prefers the lopsided first policy.
    policies = np.array([[1.0, 0.1], [0.6, 0.55], [0.1, 0.9]])
    omd = OnlineTchebycheff([0.5, 0.5], ideal=[1.0, 1.0], step_size=2.0)
    chosen = []
    for _ in range(200):
        best = int(np.argmax(omd.scalarise(policies)))
        chosen.append(best)
        omd.update(policies[best])
    tchebycheff_value = np.min(0.5 * (policies - 1.0), axis=1)
    assert np.argmax(tchebycheff_value) == 1
    assert np.bincount(chosen[100:], minlength=3).argmax() == 1


def test_bad_arguments_and_state_round_trip():
    with pytest.raises(ValueError, match="2 objectives"):
        OnlineTchebycheff([0.5, 0.5], ideal=[1.0])
    with pytest.raises(ValueError, match="finite"):
        OnlineTchebycheff([0.5, 0.5], ideal=[1.0, float("nan")])
    a = OnlineTchebycheff([0.3, 0.7], ideal=[0.0, 0.0])
    a.update([-1.0, -0.2])
    b = OnlineTchebycheff([0.3, 0.7], ideal=[0.0, 0.0])
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.weights, b.weights)
