"""Hand-worked examples of the MGDA-Decoupled method card (SPEC.md):

weights = min-norm point of the hull of g_i / L_i (Gram form M_ij = G_ij / (L_i L_j)),
update   = sum_i alpha_i g_i on the RAW gradients.
For K = 2 the min-norm weight is alpha_1 = (M_22 - M_12) / (M_11 + M_22 - 2 M_12), clipped to [0, 1].
"""

import dataclasses

import numpy as np
import pytest
import torch

from moalign.moo import MinNormRule, ObjectiveStats, get_rule, min_norm_weights


def combine(rule, grads, losses=None):
    stats = ObjectiveStats(grads=torch.tensor(grads, dtype=torch.float64),
                           losses=None if losses is None else torch.tensor(losses, dtype=torch.float64))
    return get_rule(rule).combine(stats)


def test_larger_loss_gets_larger_weight():
    # g1 = (1, 0), g2 = (0, 1): G = I. Losses L = (1.0, 0.5).
    # M = diag(1/1^2, 1/0.5^2) = diag(1, 4); alpha_1 = (4 - 0) / (1 + 4 - 0) = 0.8, alpha_2 = 0.2.
    # The objective far from convergence (L = 1.0) gets 0.8; d = 0.8 g1 + 0.2 g2 = (0.8, 0.2).
    grads = [[1.0, 0.0], [0.0, 1.0]]
    result = combine("mgda_decoupled", grads, [1.0, 0.5])
    np.testing.assert_allclose(result.weights, [0.8, 0.2], atol=1e-12)
    np.testing.assert_allclose(result.direction, [0.8, 0.2], atol=1e-12)
    # plain MGDA on equal-norm orthogonal gradients splits evenly; so does MGDA-Normalised
    np.testing.assert_allclose(combine("mgda", grads).weights, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(combine("mgda_normalised", grads).weights, [0.5, 0.5], atol=1e-12)


def test_decoupling_undoes_mgda_bias_to_small_gradients():
    # g1 = (2, 0), g2 = (0, 1): G = diag(4, 1).
    # MGDA: alpha_1 = (1 - 0) / (4 + 1) = 0.2 -> the small gradient g2 dominates (0.8).
    # MGDA-Normalised: M = I -> (0.5, 0.5).
    # MGDA-Decoupled at initialisation, L = (log 2, log 2): M = G / log(2)^2 -> same as MGDA, (0.2, 0.8).
    # MGDA-Decoupled with L = (2.0, 0.5): M = diag(4/4, 1/0.25) = diag(1, 4) -> alpha = (0.8, 0.2),
    #   and the update on raw gradients is d = 0.8 (2, 0) + 0.2 (0, 1) = (1.6, 0.2).
    grads = [[2.0, 0.0], [0.0, 1.0]]
    np.testing.assert_allclose(combine("mgda", grads).weights, [0.2, 0.8], atol=1e-12)
    np.testing.assert_allclose(combine("mgda_normalised", grads).weights, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(combine("mgda_decoupled", grads, [np.log(2), np.log(2)]).weights, [0.2, 0.8], atol=1e-12)
    result = combine("mgda_decoupled", grads, [2.0, 0.5])
    np.testing.assert_allclose(result.weights, [0.8, 0.2], atol=1e-12)
    np.testing.assert_allclose(result.direction, [1.6, 0.2], atol=1e-12)


def test_three_objectives_by_hand():
    # Orthogonal unit gradients, losses (1, 1, 0.5): M = diag(1, 1, 4).
    # Min-norm over the simplex of diag(m): alpha_i proportional to 1/m_i = (1, 1, 0.25) -> (4/9, 4/9, 1/9).
    result = combine("mgda_decoupled", np.eye(3).tolist(), [1.0, 1.0, 0.5])
    np.testing.assert_allclose(result.weights, [4 / 9, 4 / 9, 1 / 9], atol=1e-12)


def test_tiny_loss_is_clamped_not_divided_by_zero():
    result = combine("mgda_decoupled", [[1.0, 0.0], [0.0, 1.0]], [0.5, 0.0])
    # L_2 clamps to eps = 1e-8: its normalised gradient is huge, so it gets (almost) no weight.
    assert result.weights[0] > 1 - 1e-12 and torch.isfinite(result.weights).all()


def test_apply_to_normalised_uses_the_min_norm_point_of_the_normalised_gradients():
    grads = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]], dtype=torch.float64)
    for normaliser in ("l2", "loss"):
        stats = ObjectiveStats(losses=torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64), grads=grads)
        raw = MinNormRule(normaliser).combine(stats)
        normalised = MinNormRule(normaliser, apply_to="normalised").combine(stats)
        scale = torch.as_tensor(MinNormRule(normaliser).scales(dataclasses.replace(stats, gram=grads @ grads.T)))
        alpha, _ = min_norm_weights(((grads / scale[:, None]) @ (grads / scale[:, None]).T).numpy())
        torch.testing.assert_close(raw.weights, torch.as_tensor(alpha))  # a applied to the raw gradients
        torch.testing.assert_close(normalised.weights, torch.as_tensor(alpha) / scale)  # ... to g_i / n_i
        torch.testing.assert_close(normalised.direction, torch.as_tensor(alpha) @ (grads / scale[:, None]))
    with pytest.raises(ValueError, match="apply_to"):
        MinNormRule("l2", apply_to="both")
