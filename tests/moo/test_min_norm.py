import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from references import exact_min_norm, slsqp_on_simplex

from moalign.moo import CombinationError, MinNormRule, ObjectiveStats, get_rule, min_norm_weights, representation_gram

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@st.composite
def gradient_sets(draw, min_k=2, max_k=6):
    k = draw(st.integers(min_k, max_k))
    d = draw(st.integers(1, 8))
    return draw(arrays(np.float64, (k, d), elements=finite))


@settings(max_examples=200, deadline=None)
@given(gradient_sets())
def test_min_norm_matches_an_exact_solver_and_satisfies_kkt(grads):
    gram = grads @ grads.T
    alpha, _ = min_norm_weights(gram)
    reference, best = exact_min_norm(gram, digits=30)
    value = alpha @ gram @ alpha
    scale = max(np.max(np.diag(gram)), 1e-12)
    assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-12
    assert value <= best + 1e-9 * scale
    # the min-norm point itself is unique even when the weights are not
    np.testing.assert_allclose(alpha @ grads, reference @ grads, atol=1e-6 * np.sqrt(scale))
    grad = gram @ alpha  # KKT: every objective's slope along d is at least |d|^2, with equality on the support
    assert (grad >= value - 1e-9 * scale).all()
    assert np.all(np.abs(grad[alpha > 1e-9] - value) <= 1e-7 * scale)


@settings(max_examples=100, deadline=None)
@given(gradient_sets(min_k=3, max_k=8), st.floats(0.1, 2.0))
def test_weights_match_an_slsqp_qp_when_unique(grads, ridge):
    k = grads.shape[0]
    gram = grads @ grads.T + ridge * np.eye(k)  # positive definite: the minimiser is unique
    alpha, _ = min_norm_weights(gram)
    reference, _ = slsqp_on_simplex(lambda w: w @ gram @ w, k, jac=lambda w: 2 * gram @ w)
    exact, _ = exact_min_norm(gram, digits=30)
    np.testing.assert_allclose(alpha, exact, atol=1e-9)
    np.testing.assert_allclose(alpha, reference, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(gradient_sets())
def test_mgda_direction_descends_every_objective_unless_stationary(grads):
    result = get_rule("mgda").combine(ObjectiveStats(grads=torch.tensor(grads)))
    d = result.direction.numpy()
    norm_sq = d @ d
    scale = max(np.max(np.sum(grads**2, axis=1)), 1e-12)
    # every objective's slope along d is at least |d|^2: a common descent direction, or d = 0 at a
    # Pareto-stationary point (then the exact min-norm value is 0 too)
    assert (grads @ d >= norm_sq - 1e-7 * scale).all()
    _, exact = exact_min_norm(grads @ grads.T, digits=30)
    assert norm_sq == pytest.approx(exact, rel=1e-6, abs=1e-9 * scale)


def test_closed_form_two_objectives_and_degenerate_cases():
    alpha, _ = min_norm_weights(np.diag([4.0, 1.0]))
    np.testing.assert_allclose(alpha, [0.2, 0.8])
    alpha, _ = min_norm_weights(np.array([[1.0, -1.0], [-1.0, 1.0]]))  # opposite: stationary, d = 0
    np.testing.assert_allclose(alpha, [0.5, 0.5])
    alpha, _ = min_norm_weights(np.ones((3, 3)))  # parallel and equal
    assert abs(alpha.sum() - 1) < 1e-12 and alpha @ np.ones((3, 3)) @ alpha == pytest.approx(1.0)
    alpha, _ = min_norm_weights(np.zeros((4, 4)))  # zero gradients
    assert abs(alpha.sum() - 1) < 1e-12 and (alpha >= 0).all()
    assert min_norm_weights(np.array([[3.0]]))[0].tolist() == [1.0]
    for magnitude in (1e-20, 1e20):
        g = magnitude * np.array([[1.0, 0, 0], [0, 2.0, 0], [1.0, 1.0, 1.0]])
        alpha, _ = min_norm_weights(g @ g.T)
        exact, _ = exact_min_norm((g / magnitude) @ (g / magnitude).T, digits=30)
        np.testing.assert_allclose(alpha, exact, atol=1e-9)


def test_gram_from_two_shards_gives_the_same_weights():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 1000))
    losses = torch.tensor([0.9, 0.3, 0.6, 0.1])
    full = get_rule("mgda_decoupled").combine(ObjectiveStats(losses=losses, grads=torch.tensor(grads)))
    shard_a, shard_b = grads[:, :400], grads[:, 400:]  # e.g. two FSDP ranks holding halves of the parameters
    summed = torch.tensor(shard_a @ shard_a.T + shard_b @ shard_b.T)  # the all-reduce of K x K numbers
    sharded = get_rule("mgda_decoupled").combine(ObjectiveStats(losses=losses, gram=summed))
    torch.testing.assert_close(sharded.weights, full.weights, atol=1e-12, rtol=0)


def test_bad_inputs_fail_clearly():
    with pytest.raises(CombinationError, match=r"gram has a non-finite value nan at index \[0, 1\]"):
        get_rule("mgda").combine(ObjectiveStats(gram=torch.tensor([[1.0, float("nan")], [0.0, 1.0]])))
    with pytest.raises(CombinationError, match="losses has a non-finite value inf"):
        get_rule("mgda_decoupled").combine(ObjectiveStats(losses=torch.tensor([1.0, float("inf")]), gram=torch.eye(2)))
    with pytest.raises(CombinationError, match="needs losses"):
        get_rule("mgda_decoupled").combine(ObjectiveStats(gram=torch.eye(2)))
    with pytest.raises(CombinationError, match="needs gram"):
        get_rule("mgda").combine(ObjectiveStats(losses=torch.ones(2)))
    with pytest.raises(ValueError, match="unknown combination rule 'mgda2'"):
        get_rule("mgda2")
    with pytest.raises(ValueError, match="unknown normaliser"):
        MinNormRule("l3")


def test_representation_gram_for_mgda_ub():
    # L_i = w_i . z + 0.5 |z|^2 with z shared: dL_i/dz = w_i + z, so the Gram is (W + z)(W + z)^T.
    z = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]], dtype=torch.float64)
    losses = [w[i] @ z + 0.5 * (z @ z) for i in range(2)]
    gram = representation_gram(losses, z)
    expected = (w + z.detach()) @ (w + z.detach()).T
    torch.testing.assert_close(gram, expected)
    result = get_rule("mgda_ub").combine(ObjectiveStats(gram=gram))
    np.testing.assert_allclose(result.weights, min_norm_weights(expected.numpy())[0])


@st.composite
def badly_scaled_gradients(draw):
    """K generic directions (d >= K, so every support's KKT system is regular) whose norms span up to 1e6."""
    k = draw(st.integers(2, 5))
    d = draw(st.integers(k, 8))
    directions = draw(arrays(np.float64, (k, d), elements=st.floats(-1, 1, allow_nan=False)))
    exponents = draw(arrays(np.float64, (k,), elements=st.floats(-3, 3)))
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    assume((norms > 1e-3).all() and np.linalg.matrix_rank(directions) == k)  # generic directions only
    return directions / norms * (10.0 ** exponents)[:, None]


@settings(max_examples=60, deadline=None)
@given(badly_scaled_gradients())
def test_min_norm_matches_an_exact_solver_for_norm_ratios_up_to_1e6(grads):
    gram = grads @ grads.T
    alpha, _ = min_norm_weights(gram)
    exact, best = exact_min_norm(gram)
    value = alpha @ gram @ alpha
    # the Gram itself is only exact to round-off of its smallest entries: below that, "relative" has no meaning
    floor = 64 * np.finfo(np.float64).eps * np.diag(gram).min()
    assert abs(value - best) <= 1e-6 * best + floor, (value, best)
    point, reference = alpha @ grads, exact @ grads
    assert np.linalg.norm(point - reference) <= 1e-6 * np.linalg.norm(reference) + np.sqrt(floor)


@pytest.mark.parametrize("small, large", [(1e-3, 1e3), (1e3, 1e-3), (1.0, 1e6)])
def test_min_norm_is_exact_when_norms_differ_by_1e6(small, large):
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 6))
    grads /= np.linalg.norm(grads, axis=1, keepdims=True)
    grads *= np.array([small, large, large, small])[:, None]
    gram = grads @ grads.T
    alpha, _ = min_norm_weights(gram)
    _, best = exact_min_norm(gram)
    assert alpha @ gram @ alpha == pytest.approx(best, rel=1e-6)
