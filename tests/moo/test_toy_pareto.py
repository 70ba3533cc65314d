"""Iterating each rule on quadratics with a known Pareto set reaches Pareto-stationary points.

f_i(x) = s_i ||x - a_i||^2. The Pareto set is the convex hull of the a_i (a segment for K = 2, a
triangle for K = 3); x is Pareto-stationary exactly when the min-norm point of the hull of the
gradients is zero. The test checks stationarity, not where on the front each rule lands.
"""

import numpy as np
import pytest
import torch

from moalign.moo import ObjectiveStats, get_rule, min_norm_weights

PROBLEMS = {
    "segment": (np.array([[0.0, 0.0], [2.0, 1.0]]), np.array([1.0, 3.0])),
    "triangle": (np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 1.5]]), np.array([1.0, 2.0, 0.5])),
}
RULES = ["linear", "mgda", "mgda_normalised", "mgda_decoupled", "group_dro", "pcgrad", "cagrad"]


def stationarity(x, centres, scales):
    grads = 2 * scales[:, None] * (x - centres)
    alpha, _ = min_norm_weights(grads @ grads.T)
    return float(np.linalg.norm(alpha @ grads))


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("rule_name", RULES)
def test_iterates_reach_pareto_stationary_points(rule_name, problem):
    centres, scales = PROBLEMS[problem]
    for start in ([3.0, -2.0], [-1.5, 2.5], [0.3, 0.1]):
        rule = get_rule(rule_name)
        x = np.array(start)
        for _ in range(2000):
            grads = 2 * scales[:, None] * (x - centres)
            losses = scales * ((x - centres) ** 2).sum(axis=1)
            result = rule.combine(ObjectiveStats(losses=torch.tensor(losses), grads=torch.tensor(grads)))
            x = x - 0.02 * result.direction.numpy()
        assert stationarity(x, centres, scales) < 1e-4, (rule_name, start, x)
