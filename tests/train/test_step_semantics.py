"""One step, one meaning: every path of a step computes ``sum_k w_k grad L_k`` with ``L_k`` objective k's mean
over all the step's labelled pairs, whatever the micro-batches and processes (labels uneven across them). The
evaluation after the steps is the same whatever its batches and however the processes share it out."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import run, two_processes
from safetensors.torch import load_file
from hypothesis import given
from hypothesis import strategies as st
from step_worker import OBJECTIVES, step_gradients, uneven_dataset

WORKER = Path(__file__).resolve().parents[1] / "step_worker.py"
RULES = {
    "linear": {"rule": "linear", "preference": [0.2, 0.3, 0.5]},
    "group_dro": {"rule": "group_dro", "rule_options": {"step_size": 1.0}},
    "mgda_decoupled": {"rule": "mgda_decoupled", "gram_every": 3},  # step 0 exact, steps 1-2 cached weights
    "mgda_ub": {"rule": "mgda_ub"},
}


def grads(directory: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(directory / f"grad-{step}.safetensors"))


def assert_same_grads(got: Path, expected: Path, steps: int = 3):
    for step in range(steps):
        a, b = grads(got, step), grads(expected, step)
        assert a.keys() == b.keys()
        scale = max(t.abs().max().item() for t in b.values())
        for key in b:
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4 * scale, msg=f"step {step}, {key}")


def assert_same_evaluation(got: Path, expected: Path):
    got, expected = (json.loads(path.read_text()) for path in (got, expected))
    assert got.keys() == expected.keys() == set(OBJECTIVES)
    for name, want in expected.items():
        assert got[name]["pairs"] == want["pairs"] > 0, name  # every pair counted once, fillers not at all
        for key in ("accuracy", "loss", "margin"):
            assert got[name][key] == pytest.approx(want[key], rel=1e-4, abs=5e-5), (name, key)  # float32 sums


@given(n=st.integers(0, 50), world=st.integers(1, 8))
def test_evaluation_shares_are_contiguous_blocks_that_cover_the_items_once(n, world):
    from moalign.train.base import evaluation_share

    shares = [evaluation_share(n, rank, world) for rank in range(world)]
    assert [i for share, _ in shares for i in share] == list(range(n))
    per = shares[0][1]
    assert all(p == per and len(share) <= per for share, p in shares)
    assert (per - 1) * world < n <= per * world  # the padded size is the least that holds every share


@given(n=st.integers(1, 50), size=st.integers(1, 8), world=st.integers(1, 4))
def test_every_process_runs_as_many_evaluation_batches_and_counts_each_item_once(n, size, world):
    from moalign.train.base import TrainerBase

    class Process(TrainerBase):
        training_step = evaluate = None  # only the evaluation share-out is under test

        def __init__(self, rank):
            self.accelerator = SimpleNamespace(process_index=rank, num_processes=world)

    batches = [list(Process(rank).eval_batches(n, size)) for rank in range(world)]
    assert len({len(b) for b in batches}) == 1
    assert all(len(index) <= size for b in batches for index, _ in b)
    assert sorted(i for b in batches for index, counted in b if counted for i in index) == list(range(n))


def test_the_dataset_has_uneven_labels_across_micro_batches():
    from moalign.data import StepSampler

    data = uneven_dataset()
    sampler = StepSampler(len(data), 2, accumulation=2, num_processes=2)
    counts = set()
    for step in range(3):
        for m in range(2):
            for r in range(2):
                pairs = [data[i] for i in sampler.indices(step, m, r)]
                counts.add(tuple(sum(name in p.labels for p in pairs) for name in data.objectives))
    assert len(counts) > 3 and any(0 in c for c in counts)


@pytest.fixture(scope="module")
def one_big_batch(tiny_model_path, tmp_path_factory):
    out = {}
    for name, options in RULES.items():
        out[name] = tmp_path_factory.mktemp(f"big-{name}")
        step_gradients(str(tiny_model_path), out[name], per_device_batch_size=8, **options)
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(rule, tiny_model_path, tmp_path, one_big_batch):
    records = step_gradients(str(tiny_model_path), tmp_path, per_device_batch_size=2, gradient_accumulation_steps=4,
                             **RULES[rule])
    assert_same_grads(tmp_path, one_big_batch[rule])
    assert_same_evaluation(tmp_path / "eval-0.json", one_big_batch[rule] / "eval-0.json")  # batches of 4, not 16
    if rule == "mgda_decoupled":
        assert [r["metrics"]["exact_gradients"] for r in records] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_two_processes_give_the_gradient_of_one_big_batch(rule, tiny_model_path, tmp_path, one_big_batch):
    options = {**RULES[rule], "per_device_batch_size": 2, "gradient_accumulation_steps": 2}
    args = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict) else v}"
            for k, v in options.items()]
    run(two_processes(str(WORKER), str(tmp_path), str(tiny_model_path), *args), tmp_path)
    assert_same_grads(tmp_path, one_big_batch[rule])
    for r in range(2):  # each process scored its share (one ran a filler batch); both report the whole set
        assert_same_evaluation(tmp_path / f"eval-{r}.json", one_big_batch[rule] / "eval-0.json")
    per_rank = [json.loads((tmp_path / f"records-{r}.json").read_text()) for r in range(2)]
    assert [r["rule"] for r in per_rank[0]] == [r["rule"] for r in per_rank[1]]  # GroupDRO's q the same on both
    big = json.loads((one_big_batch[rule] / "records-0.json").read_text())
    for got, want in zip(per_rank[0], big):
        for key, value in want["metrics"].items():
            if key.endswith("/loss") or key.endswith("/pairs"):  # the logged loss is the step's loss
                assert got["metrics"][key] == pytest.approx(value, rel=1e-4), key
