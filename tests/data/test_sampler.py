from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.data import StepSampler


def all_micro_batches(sampler, steps):
    return [[[sampler.indices(s, m, r) for r in range(sampler.num_processes)] for m in range(sampler.accumulation)]
            for s in range(steps)]


@given(n=st.integers(1, 60), size=st.integers(1, 5), accumulation=st.integers(1, 3), processes=st.integers(1, 3),
       leftover=st.sampled_from(["wrap", "drop"]), seed=st.integers(0, 5))
@settings(max_examples=150, deadline=None)
def test_every_micro_batch_is_full_and_an_epoch_covers_the_data(n, size, accumulation, processes, leftover, seed):
    per_step = size * accumulation * processes
    if leftover == "drop" and n < per_step:
        with pytest.raises(ValueError, match="fewer than one optimizer step"):
            StepSampler(n, size, accumulation, processes, seed, leftover)
        return
    sampler = StepSampler(n, size, accumulation, processes, seed, leftover)
    steps = sampler.steps_per_epoch
    batches = all_micro_batches(sampler, 2 * steps + 1)  # across two epoch boundaries
    for step in batches:
        for micro in step:
            for indices in micro:
                assert len(indices) == size and all(0 <= i < n for i in indices)
    epoch = Counter(i for step in batches[:steps] for micro in step for indices in micro for i in indices)
    if leftover == "drop":
        assert max(epoch.values()) == 1 and sum(epoch.values()) == steps * per_step
        assert len(epoch) == n - n % per_step
    else:
        assert set(epoch) == set(range(n))  # every item seen, some twice only to fill the last step
        assert sum(epoch.values()) == steps * per_step


def test_processes_and_micro_batches_partition_the_step():
    sampler = StepSampler(23, 3, accumulation=2, num_processes=2, seed=1)
    for step in range(sampler.steps_per_epoch * 2):
        parts = [i for m in range(2) for r in range(2) for i in sampler.indices(step, m, r)]
        assert parts == sampler.step_indices(step)


def test_the_step_at_the_epoch_end_with_accumulation_and_two_processes():
    # 10 items, 2 per micro-batch, accumulation 2, 2 processes: 8 a step, the second step of each epoch is partial.
    wrap = StepSampler(10, 2, accumulation=2, num_processes=2, seed=0)
    assert wrap.steps_per_epoch == 2
    last = wrap.step_indices(1)
    order = wrap.epoch_order(0)
    assert last == order[8:] + order[:6]  # completed from the start of the same epoch
    drop = StepSampler(10, 2, accumulation=2, num_processes=2, seed=0, leftover="drop")
    assert drop.steps_per_epoch == 1 and drop.step_indices(1) == drop.epoch_order(1)[:8]  # next epoch, new order


def test_a_resumed_sampler_draws_what_an_uninterrupted_one_does_mid_epoch():
    straight = StepSampler(37, 4, accumulation=2, num_processes=2, seed=3)
    straight_draws = all_micro_batches(straight, 12)
    resumed = StepSampler(**{**straight.__dict__})  # a new object, as after a restart
    assert resumed.state_dict() == straight.state_dict()
    assert all_micro_batches(resumed, 12)[5:] == straight_draws[5:]  # step 5 is mid-epoch (3 steps per epoch)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="leftover"):
        StepSampler(10, 2, leftover="pad")
    with pytest.raises(ValueError, match="empty dataset"):
        StepSampler(0, 2)
    with pytest.raises(ValueError, match="micro_batch_size"):
        StepSampler(10, 0)
    with pytest.raises(IndexError):
        StepSampler(10, 2, accumulation=2).indices(0, micro=2)
