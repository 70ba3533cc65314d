import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moalign.moo import GroupDRO, ObjectiveStats, PCGrad, get_advantage_rule, get_rule, project_zero_onto_range
from references import slsqp_on_simplex

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def pcgrad_reference(grads, seed):
    """PCGrad as written in Yu et al. (2020), on explicit vectors, with the same random order."""
    rng = np.random.default_rng(seed)
    k = grads.shape[0]
    projected = [g.copy() for g in grads]
    for i in range(k):
        for j in rng.permutation(k):
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0 and grads[j] @ grads[j] > 1e-12:
                projected[i] = projected[i] - dot / (grads[j] @ grads[j]) * grads[j]
    return np.sum(projected, axis=0)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: arrays(np.float64, (k, 6), elements=finite)), st.integers(0, 100))
def test_pcgrad_from_gram_equals_explicit_projection(grads, seed):
    result = PCGrad(seed=seed).combine(ObjectiveStats(grads=torch.tensor(grads)))
    np.testing.assert_allclose(result.direction.numpy(), pcgrad_reference(grads, seed), atol=1e-8 * (1 + np.abs(grads).max() ** 2))


def test_pcgrad_state_round_trip():
    gram = torch.tensor([[1.0, -0.6, 0.2], [-0.6, 1.0, -0.3], [0.2, -0.3, 1.0]])
    rule = PCGrad(seed=3)
    state = rule.state_dict()
    first = rule.combine(ObjectiveStats(gram=gram)).weights
    rule.load_state_dict(state)
    torch.testing.assert_close(rule.combine(ObjectiveStats(gram=gram)).weights, first)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: arrays(np.float64, (k, 6), elements=finite)), st.floats(0.1, 0.9))
def test_cagrad_inner_problem_matches_slsqp(grads, c):
    gram = grads @ grads.T
    k = gram.shape[0]
    b = gram.mean(axis=1)
    sqrt_phi = c * np.sqrt(gram.mean())
    objective = lambda w: b @ w + sqrt_phi * np.sqrt(max(w @ gram @ w, 1e-30))  # noqa: E731
    rule = get_rule("cagrad", c=c)
    ours = objective(rule.inner_weights(gram))
    best = min(slsqp_on_simplex(objective, k, x0=x0)[1] for x0 in [None, *np.eye(k)])
    assert ours <= best + 1e-6 * (1 + abs(best))


def test_cagrad_direction_formula():
    grads = np.array([[1.0, 0.0], [-0.5, 1.0]])
    rule = get_rule("cagrad", c=0.5)
    result = rule.combine(ObjectiveStats(grads=torch.tensor(grads)))
    w = np.array(result.info["inner_weights"])
    g0, gw = grads.mean(axis=0), w @ grads
    expected = (g0 + 0.5 * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + 0.25)
    np.testing.assert_allclose(result.direction.numpy(), expected, atol=1e-10)
    # c = 0 is plain averaging
    np.testing.assert_allclose(get_rule("cagrad", c=0.0).combine(ObjectiveStats(grads=torch.tensor(grads))).weights, [0.5, 0.5])


def test_group_dro_exponentiated_update_and_state():
    rule = GroupDRO(step_size=0.5)
    losses = torch.tensor([1.0, 0.0])
    w1 = rule.combine(ObjectiveStats(losses=losses)).weights
    np.testing.assert_allclose(w1, np.exp([0.5, 0.0]) / np.exp([0.5, 0.0]).sum())
    state = rule.state_dict()
    w2 = rule.combine(ObjectiveStats(losses=losses)).weights
    np.testing.assert_allclose(w2, np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum())
    fresh = GroupDRO(step_size=0.5)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.combine(ObjectiveStats(losses=losses)).weights, w2)
    with pytest.raises(ValueError, match="step_size must be positive"):
        GroupDRO(step_size=0)


def test_linear_uses_the_preference():
    rule = get_rule("linear")
    np.testing.assert_allclose(rule.combine(ObjectiveStats(losses=torch.ones(3))).weights, [1 / 3] * 3)
    pref = torch.tensor([0.7, 0.3], dtype=torch.float64)
    result = rule.combine(ObjectiveStats(losses=torch.ones(2), grads=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), preference=pref))
    np.testing.assert_allclose(result.direction, [0.7, 0.3])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: arrays(np.float64, (k,), elements=finite)))
def test_pama_closed_form_matches_a_convex_solver(values):
    s, c = project_zero_onto_range(torch.tensor(values))
    c = c.numpy()
    assert c.min() >= 0 and abs(c.sum() - 1) < 1e-12
    assert abs(c @ values - s.item()) < 1e-9  # the weights realise the combined value
    k = values.shape[0]
    _, best = slsqp_on_simplex(lambda w: (w @ values) ** 2, k, jac=lambda w: 2 * (w @ values) * values)
    assert s.item() ** 2 <= best + 1e-9


def test_pama_noon_indicator_and_worst_objective():
    advantages = torch.tensor([[[0.5, 2.0], [-1.0, 3.0], [4.0, 1.0]]])  # (batch 1, 3 tokens, K = 2)
    ratio = torch.tensor([[1.0, 1.0, 1.5]])  # the last token's ratio exceeds 1 + eps
    rule = get_advantage_rule("pama", clip_eps=0.2)
    result = rule.combine_advantages(advantages, ratio)
    # token 0: min(0.5, 2) = 0.5; token 1: Noon clips -1 -> 0, so 0; token 2: clipped ratio -> 0.
    torch.testing.assert_close(result.advantage, torch.tensor([[0.5, 0.0, 0.0]]))
    assert result.diagnostics["zero_fraction"] == pytest.approx(2 / 3)
    # implied one-hot c: token 0 -> objective 0; tokens 1, 2 are all zero -> ties share
    np.testing.assert_allclose(result.diagnostics["deciding_share"], [(1 + 1 + 0.5) / 3, (0 + 0 + 0.5) / 3])
    assert not hasattr(result, "weights")
    general = get_advantage_rule("pama", noon=False).combine_advantages(torch.tensor([[-2.0, 1.0], [-3.0, -1.0]]))
    torch.testing.assert_close(general.advantage, torch.tensor([0.0, -1.0]))


def test_absent_objectives_get_no_weight_and_do_not_capture_min_norm():
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])  # objective 1 has no data this step
    present = torch.tensor([True, False, True])
    out = get_rule("mgda").combine(ObjectiveStats(grads=grads, present=present))
    np.testing.assert_allclose(out.weights, [0.8, 0.0, 0.2])  # min-norm of {(1,0), (0,2)} only
    np.testing.assert_allclose(out.direction, [0.8, 0.4])
    linear = get_rule("linear").combine(ObjectiveStats(losses=torch.ones(3), present=present))
    np.testing.assert_allclose(linear.weights, [1 / 3, 0.0, 1 / 3])
    dro = GroupDRO(step_size=1.0)
    w = dro.combine(ObjectiveStats(losses=torch.tensor([1.0, 5.0, 0.0]), present=present)).weights
    assert w[1] == 0 and dro.q[1] == pytest.approx(1 / 3)  # its state is untouched though its loss is largest
    np.testing.assert_allclose(w[[0, 2]], np.array([np.e, 1.0]) / (np.e + 1) * 2 / 3)


def test_cagrad_closed_form_on_the_full_support_matches_slsqp():
    from moalign.moo.cagrad import _is_optimal, _stationary_on_support

    grads = np.array([[1.0, 0.2, 0.0], [-0.4, 1.0, 0.3], [0.1, -0.5, 1.0]])
    gram = grads @ grads.T
    b, s = gram.mean(axis=1), 0.5 * np.sqrt(gram.mean())
    exact = _stationary_on_support(gram, b, s, np.arange(3))
    assert exact is not None and _is_optimal(gram, b, s, exact, 1e-9)
    objective = lambda w: b @ w + s * np.sqrt(w @ gram @ w)  # noqa: E731
    np.testing.assert_allclose(exact, slsqp_on_simplex(objective, 3)[0], atol=1e-5)
    # a face that does not hold the optimum is rejected by the KKT check
    face = _stationary_on_support(gram, b, s, np.array([0]))
    assert face is None or not _is_optimal(gram, b, s, face, 1e-9)
