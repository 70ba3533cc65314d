"""Multi-objective PPO pieces against hand-computed references: GAE, the KL penalty, Noon PPO, PAMA per token."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.moo import get_advantage_rule
from moalign.train.ppo import (KLController, gae, group_advantages, kl_penalty, masked_whiten, noon_ppo_loss,
                               ppo_clip_loss, value_loss)


def gae_by_definition(rewards, values, length, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V_{t+1} - V_t with V = 0 past the end."""
    v = list(values[:length]) + [0.0]
    deltas = [rewards[t] + gamma * v[t + 1] - v[t] for t in range(length)]
    return [sum((gamma * lam) ** (j - t) * deltas[j] for j in range(t, length)) for t in range(length)]


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 3), st.floats(0.5, 1.0), st.floats(0.0, 1.0),
       st.integers(0, 99))
@settings(max_examples=60, deadline=None)
def test_gae_matches_its_definition_per_objective_with_padding(batch, steps, k, gamma, lam, seed):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(batch, steps, k, generator=g, dtype=torch.float64)
    values = torch.randn(batch, steps, k, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
    for b in range(batch):
        n = int(lengths[b])
        for i in range(k):
            expected = gae_by_definition(rewards[b, :, i].tolist(), values[b, :, i].tolist(), n, gamma, lam)
            torch.testing.assert_close(advantages[b, :n, i], torch.tensor(expected, dtype=torch.float64))
            torch.testing.assert_close(returns[b, :n, i], advantages[b, :n, i] + values[b, :n, i])
        assert (advantages[b, n:] == 0).all() and (returns[b, n:] == 0).all()


def test_kl_penalty_estimators_by_hand():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([math.exp(-0.5) - 1 + 0.5, 0.0]))
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(logp, ref, "k2")


def test_noon_ppo_loss_by_hand():
    # ratios 1.1 (inside the clip range), 1.5 (above 1 + eps: clipped, no gradient), 0.7 (below 1 - eps: the
    # min keeps u A, so it still pushes up), 1.0 with a negative advantage (Noon: clipped to 0)
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.1, 1.5, 0.7, 1.0]])).requires_grad_(True)
    advantages = torch.tensor([[2.0, 1.0, 3.0, -1.0]])
    out = noon_ppo_loss(logp, old, advantages, torch.ones(1, 4, dtype=torch.bool), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(-(2.2 + 1.2 + 2.1 + 0.0) / 4)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.2 / 4, 0.0, -2.1 / 4, 0.0]]))
    assert out.clipped_fraction == pytest.approx(0.25) and out.zero_advantage_fraction == pytest.approx(0.25)
    masked = noon_ppo_loss(logp, old, advantages, torch.tensor([[True, True, False, False]]), clip_eps=0.2)
    assert masked.loss.item() == pytest.approx(-(2.2 + 1.2) / 2)  # padding never counts


def test_pama_per_token_combination_in_the_noon_loss_by_hand():
    # K = 2 objectives, 3 tokens. Token 0: both positive -> the smaller, 0.5. Token 1: objective 0 negative ->
    # Noon clips it to 0, so the token is not reinforced. Token 2: ratio 1.5 > 1.2 -> I(A) = 0 for both.
    advantages = torch.tensor([[[0.5, 2.0], [-1.0, 3.0], [4.0, 1.0]]])
    ratio = torch.tensor([[1.0, 1.0, 1.5]])
    combined = get_advantage_rule("pama", clip_eps=0.2).combine_advantages(advantages, ratio)
    torch.testing.assert_close(combined.advantage, torch.tensor([[0.5, 0.0, 0.0]]))
    logp = torch.log(ratio).requires_grad_(True)
    out = noon_ppo_loss(logp, torch.zeros(1, 3), combined.advantage, torch.ones(1, 3, dtype=torch.bool))
    assert out.loss.item() == pytest.approx(-0.5 / 3)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5 / 3, 0.0, 0.0]]))


def test_ppo_clip_loss_clips_both_signs_by_hand():
    # ratio 1.5 with A > 0 is capped at 1.2; ratio 0.5 with A < 0 is capped at 0.8; ratio 1 passes through.
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]])).requires_grad_(True)
    out = ppo_clip_loss(logp, torch.zeros(1, 3), torch.tensor([[2.0, -1.0, 0.5]]), torch.ones(1, 3), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(-(1.2 * 2.0 + 0.8 * -1.0 + 1.0 * 0.5) / 3)
    assert out.clipped_fraction == pytest.approx(2 / 3)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, -0.5 / 3]]))  # clipped tokens get no gradient


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_by_hand():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.1]])
    # token 0: unclipped (1-2)^2 = 1, clipped to 0.2: (0.2-2)^2 = 3.24 -> 3.24; token 1: 0.01 both
    assert value_loss(values, old, returns, torch.ones(1, 2), clip=0.2).item() == pytest.approx(0.5 * (3.24 + 0.01) / 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_two_processes_whiten_their_halves_as_one_process_whitens_the_batch(rows, tokens, objectives, seed):
    """The all-reduce is two threads exchanging their partial sums, as two processes' gloo all-reduce would."""
    import threading

    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(2 * rows, tokens, objectives, generator=generator, dtype=torch.float64) * 3 + 1
    lengths = torch.randint(1, tokens + 1, (2 * rows,), generator=generator)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    slots, barrier, results = [None, None], threading.Barrier(2), [None, None]

    def process(rank):
        def all_reduce_sum(tensor):
            slots[rank] = tensor
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total
        part = slice(rank * rows, (rank + 1) * rows)
        results[rank] = masked_whiten(values[part], mask[part], sum_over_processes=all_reduce_sum)

    threads = [threading.Thread(target=process, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.testing.assert_close(torch.cat(results), masked_whiten(values, mask))


def test_whitening_is_per_objective_over_real_tokens_and_group_baseline_by_hand():
    values = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [99.0, 99.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(masked_whiten(values, mask), torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]]),
                               atol=1e-6, rtol=0)
    scores = torch.tensor([[1.0], [3.0], [10.0], [10.0]])  # two prompts, two samples each
    torch.testing.assert_close(group_advantages(scores, 2, scale=False), torch.tensor([[-1.0], [1.0], [0.0], [0.0]]))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(scores, 3)


def test_adaptive_kl_controller_moves_toward_its_target():
    fixed, adaptive = KLController(0.2), KLController(0.2, target=3.0, horizon=100)
    fixed.update(10.0, 50)
    adaptive.update(10.0, 50)  # KL above target: error clipped to +0.2, beta *= 1 + 0.2 * 50 / 100
    assert fixed.value == 0.2 and adaptive.value == pytest.approx(0.2 * 1.1)
    adaptive.update(0.0, 50)
    assert adaptive.value == pytest.approx(0.2 * 1.1 * 0.9)
