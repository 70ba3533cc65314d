"""MODPO: its loss against the formula, its margins against the scorers, what its margin teaches, the CLI, bad input."""

import dataclasses
import json
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from helpers import moalign, train_until_killed
from moalign.config import ConfigError
from moalign.data import PreferenceDataset
from moalign.data.schema import Label
from moalign.objectives import get_scorer
from moalign.tasks import BundledTaskConfig, build_synthetic_task
from moalign.train import MODPOConfig, MODPOTrainer, MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer, objective_losses
from moalign.train.modpo import modpo_margins

TWO = ["informative", "warm"]


def settings_for(tiny_model_path, tmp_path, **overrides):
    base = dict(model=str(tiny_model_path), objectives=TWO, per_device_batch_size=8, learning_rate=1e-3,
                use_lora=False, logging_steps=0, eval_before=False, output_dir=str(tmp_path / "run"))
    return {**base, **overrides}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.floats(0.05, 1.0), st.floats(0.05, 2.0), st.integers(0, 2**31 - 1))
def test_the_main_objectives_loss_is_modpos_formula(batch, main_weight, beta, seed):
    g = torch.Generator().manual_seed(seed)
    h, gaps = torch.randn(batch, generator=g, dtype=torch.float64), torch.randn(batch, generator=g, dtype=torch.float64)
    signs = torch.randint(0, 2, (batch,), generator=g) * 2 - 1
    got = objective_losses(modpo_margins(h, gaps, beta=beta, main_weight=main_weight)[:, None], signs[:, None],
                           torch.ones(batch, 1, dtype=torch.bool), beta=beta)
    # -log sigmoid((1/w_m) [beta (h_w - h_l) - (r_w - r_l)]), written out per pair from the chosen side
    expected = np.mean([math.log1p(math.exp(-(beta * s * float(hh) - s * float(gap)) / main_weight))
                        for hh, gap, s in zip(h, gaps, signs.tolist())])
    assert float(got.losses[0]) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert int(got.counts[0]) == batch


def test_margins_are_the_weighted_reward_differences_of_each_pair_and_scored_once(tiny_model_path, tmp_path, monkeypatch):
    def build(preference, **datasets):
        return MODPOTrainer(MODPOConfig(**settings_for(tiny_model_path, tmp_path, task="synthetic", max_steps=1,
                                                       use_lora=True, objectives=["informative", "readable", "warm"],
                                                       main_objective="informative", preference=preference,
                                                       margin_rewards=["readable", "warm"], eval_fraction=0.2)),
                            **datasets)

    trainer = build([2, 1, 1])
    differences = {}
    for split, dataset in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
        prompts = [p.prompt for p in dataset.pairs]
        differences[split] = {name: get_scorer(name).reward(prompts, [p.response_a for p in dataset.pairs])
                              - get_scorer(name).reward(prompts, [p.response_b for p in dataset.pairs])
                              for name in ("readable", "warm")}
        expected = 0.25 * differences[split]["readable"] + 0.25 * differences[split]["warm"]
        np.testing.assert_allclose(trainer.reward_gaps[split].numpy(), expected, rtol=1e-12)
        assert np.abs(expected).max() > 0.1  # the margins are not all zero
    # another preference on the same data and rewards reads the cached differences: nothing is scored again
    monkeypatch.setattr("moalign.objectives.base.Scorer.reward", lambda *args: pytest.fail("scored again"))
    other = build([1, 2, 1], train_dataset=trainer.train_dataset, eval_dataset=trainer.eval_dataset)
    for split in ("train", "eval"):
        expected = 0.5 * differences[split]["readable"] + 0.25 * differences[split]["warm"]
        np.testing.assert_allclose(other.reward_gaps[split].numpy(), expected, rtol=1e-12)


def test_with_all_weight_on_the_main_objective_modpo_is_dpo_on_it(tiny_model_path, tmp_path):
    common = settings_for(tiny_model_path, tmp_path, task="synthetic", max_steps=6, use_lora=True,
                          per_device_batch_size=4, max_length=64, max_prompt_length=24)
    dpo = MultiObjectiveDPOTrainer(MultiObjectiveDPOConfig(**{**common, "output_dir": str(tmp_path / "dpo")},
                                                           rule="linear", preference=[1, 0]))
    modpo = MODPOTrainer(MODPOConfig(**{**common, "output_dir": str(tmp_path / "modpo")},
                                     main_objective="informative", preference=[1, 0], margin_rewards=["warm"]))
    dpo.train()
    modpo.train()
    a = load_file(tmp_path / "dpo" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "modpo" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # trained: LoRA's B starts at zero


def test_the_margin_teaches_the_other_objective_when_the_main_labels_carry_no_signal(tiny_model_path, tmp_path):
    # informative's labels are coin flips, so a policy can learn warm's ordering only from MODPO's margin: at
    # w = (0.2, 0.8) its optimum has beta * h = 0.8 (warm(A) - warm(B)). Plain DPO on those labels reaches 0.34
    # held-out warm accuracy; MODPO 0.67 (0.55 at w = (0.5, 0.5)), over 94 held-out warm pairs.
    task = build_synthetic_task(BundledTaskConfig(objectives=tuple(TWO)))
    rng = random.Random(0)
    pairs = [dataclasses.replace(p, labels={**p.labels, "informative": rng.choice([Label.A, Label.B])})
             for p in task.pairs]
    train, held_out = PreferenceDataset(pairs, TWO).split(0.25, seed=0)
    config = MODPOConfig(**settings_for(tiny_model_path, tmp_path, max_steps=90), main_objective="informative",
                         preference=[0.2, 0.8], margin_rewards=["warm"])
    warm = MODPOTrainer(config, train_dataset=train, eval_dataset=held_out).train()["eval_after"]["warm"]
    lower = warm["accuracy"] - 1.645 * math.sqrt(warm["accuracy"] * (1 - warm["accuracy"]) / warm["pairs"])
    assert lower > 0.5, warm


def test_train_modpo_on_the_command_line(tiny_model_path, tmp_path):
    out = moalign("train", "modpo", "--model", tiny_model_path, "--task", "synthetic", "--objectives", "informative,warm",
                  "--main_objective", "informative", "--margin_rewards", "warm", "--preference", "0.6,0.4",
                  "--max_steps", "2", "--per_device_batch_size", "4", "--max_length", "64", "--max_prompt_length", "24",
                  "--output_dir", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "final" / "moalign_training.json").read_text())
    assert summary["rule"] == "modpo" and summary["main_objective"] == "informative"
    # what `eval front --methods models:...` places the model at
    assert summary["objectives"] == ["informative", "warm"] and summary["config"]["preference"] == [0.6, 0.4]
    assert (tmp_path / "run" / "final" / "adapter_config.json").exists()
    bad = moalign("train", "modpo", "--model", tiny_model_path, "--task", "synthetic", "--objectives", "informative,warm",
                  "--main_objective", "informative", "--preference", "0.6,0.4", "--output_dir", tmp_path / "bad")
    assert bad.returncode == 2 and "has 2 weight(s) but there are 1 objectives ['informative']" in bad.stderr


def test_bad_modpo_settings_fail_clearly(tiny_model_path, tmp_path):
    def build(**overrides):
        return MODPOConfig(**{**settings_for(tiny_model_path, tmp_path, task="synthetic", max_steps=1),
                              "main_objective": "informative", "preference": [0.5, 0.5], "margin_rewards": ["warm"],
                              **overrides})

    with pytest.raises(ConfigError, match="needs main_objective"):
        build(main_objective=None)
    with pytest.raises(ConfigError, match="needs a preference"):
        build(preference=None)
    with pytest.raises(ConfigError, match="takes no combination rule"):
        build(rule="mgda_decoupled")
    with pytest.raises(ConfigError, match="name an objective twice"):
        build(margin_rewards=["informative"], preference=[0.5, 0.5])
    with pytest.raises(ConfigError, match="unknown reward 'friendly'"):
        build(margin_rewards=["friendly"])
    with pytest.raises(ConfigError, match="needs a positive weight"):
        build(preference=[0, 1])
    with pytest.raises(ConfigError, match="has 3 weight"):
        build(preference=[0.5, 0.25, 0.25])
    with pytest.raises(ConfigError, match="negative"):
        build(preference=[0.5, -0.5])
    with pytest.raises(ConfigError, match="'helpful' is not one of the data's objectives"):
        MODPOTrainer(build(main_objective="helpful", margin_rewards=["warm"]))
    # the margin's objective needs no labelled pairs: here the data labels informative only
    trainer = MODPOTrainer(build(objectives=["informative"]))
    assert trainer.objectives == ("informative",) and trainer.margin_weights == [0.5]


def test_a_killed_run_resumes_to_the_same_weights_and_refuses_another_trade_off(tiny_model_path, tmp_path, monkeypatch):
    def run_config(name, **overrides):
        return MODPOConfig(**settings_for(tiny_model_path, tmp_path / name, task="synthetic", max_steps=6, save_steps=3,
                                          use_lora=True, per_device_batch_size=4, max_length=64, max_prompt_length=24),
                           main_objective="informative", margin_rewards=["warm"], **{"preference": [0.4, 0.6], **overrides})

    MODPOTrainer(run_config("a")).train()
    train_until_killed(MODPOTrainer(run_config("b")), 4, monkeypatch)
    with pytest.raises(ConfigError, match=r"preference: \[0.4, 0.6\] -> \[0.7, 0.3\]"):
        MODPOTrainer(run_config("b", preference=[0.7, 0.3])).train(resume_from="latest")
    MODPOTrainer(run_config("b")).train(resume_from="latest")
    a = load_file(tmp_path / "a" / "run" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "final" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
