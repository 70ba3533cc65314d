"""Reward-model training: Bradley-Terry per objective, held-out accuracy above chance, a folder transformers loads."""

import json
import os

import numpy as np
import pytest
import torch
from helpers import moalign

from moalign.data import PreferenceDataset
from moalign.objectives import build_rewards, reward_model_scorers
from moalign.objectives.reward_model import DEFAULT_MAX_LENGTH, RewardModelScorer, encode_conversations, sequence_rewards
from moalign.train import RewardModelConfig, RewardModelTrainer
from moalign.train.losses import objective_losses


def config(tiny_model_path, tmp_path, **overrides):
    base = dict(model=str(tiny_model_path), task="synthetic", output_dir=str(tmp_path / "rm"), per_device_batch_size=16,
                learning_rate=3e-3, use_lora=False, eval_fraction=0.2, logging_steps=5)
    return RewardModelConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(tiny_model_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    trainer = RewardModelTrainer(config(tiny_model_path, tmp, max_steps=40))
    return trainer, trainer.train(), tmp / "rm" / "final"


def test_every_objective_beats_chance_on_held_out_pairs_of_the_bundled_task(trained):
    _, summary, _ = trained
    for name, after in summary["eval_after"].items():
        assert after["pairs"] >= 50, name
        assert after["lower_bound_one_sided"] > 0.5, (name, after)  # one-sided 95 % Wilson bound
        assert after["low"] <= after["accuracy"] <= after["high"]
        assert after["loss"] < summary["eval_before"][name]["loss"], name


def test_saved_folder_loads_in_transformers_and_scores_as_trained(trained):
    from transformers import AutoModelForSequenceClassification

    trainer, _, final = trained
    model = AutoModelForSequenceClassification.from_pretrained(final)
    assert model.config.num_labels == 3
    assert [model.config.id2label[k] for k in range(3)] == ["informative", "readable", "warm"]
    assert json.loads((final / "moalign_training.json").read_text())["objectives"] == ["informative", "readable", "warm"]
    pairs = trainer.eval_dataset.pairs[:6]
    prompts, responses = [p.prompt for p in pairs], [p.response_a for p in pairs]
    with torch.no_grad():
        expected = sequence_rewards(trainer.model.eval(), encode_conversations(trainer.tokenizer, prompts, responses, 512))
    scorers = reward_model_scorers(str(final), batch_size=4)
    assert [s.name for s in scorers] == ["informative", "readable", "warm"]
    # scored at the token limit it was trained with, whichever way it is loaded, unless told otherwise
    trained_length = trainer.config.max_length
    assert {s.max_length for s in scorers} == {trained_length} != {DEFAULT_MAX_LENGTH}
    assert build_rewards([f"warm=rm:{final}:warm"])[0].max_length == trained_length
    assert RewardModelScorer.from_pretrained(str(final), head="warm").max_length == trained_length
    assert build_rewards([f"warm=rm:{final}:warm"], max_length=32)[0].max_length == 32
    # the fingerprint (what cached scores are keyed on) changes when the model is retrained in place
    before = scorers[0].fingerprint()
    weights = next(final.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert before["weights"] and scorers[0].fingerprint() != before
    for k, scorer in enumerate(scorers):
        np.testing.assert_allclose(scorer.reward(prompts, responses), expected[:, k].numpy(), rtol=1e-4, atol=1e-5)


def test_bradley_terry_loss_against_a_hand_computation():
    rewards = torch.tensor([[1.0, 0.0], [0.5, 2.0], [0.0, 0.0], [2.0, -1.0]])  # A0, A1, B0, B1 for 2 objectives
    labels = torch.tensor([[1, -1], [-1, 0]], dtype=torch.int8)
    mask = torch.tensor([[True, True], [True, False]])
    out = objective_losses(rewards[:2] - rewards[2:], labels, mask, beta=1.0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected0 = (-np.log(sig(1.0 - 0.0)) - np.log(sig(-(0.5 - 2.0)))) / 2
    expected1 = -np.log(sig(-(0.0 - 0.0)))
    np.testing.assert_allclose(out.losses.numpy(), [expected0, expected1], rtol=1e-6)
    assert out.counts.tolist() == [2, 1]


def test_lora_reward_model_is_merged_into_a_plain_folder_and_resumes_to_the_same_weights(tiny_model_path, tmp_path):
    from safetensors.torch import load_file

    straight = RewardModelTrainer(config(tiny_model_path, tmp_path / "a", use_lora=True, max_steps=4, eval_before=False))
    straight.train()
    first = RewardModelTrainer(config(tiny_model_path, tmp_path / "b", use_lora=True, max_steps=4, eval_before=False, save_steps=2))
    first.total_steps = 2  # the kill: stop after the checkpoint at step 2
    first.train()
    resumed = RewardModelTrainer(config(tiny_model_path, tmp_path / "b", use_lora=True, max_steps=4, eval_before=False,
                                        save_steps=2, resume_from="latest"))
    assert resumed.train()["resumed_at_step"] == 2
    a = load_file(str(tmp_path / "a" / "rm" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "rm" / "final" / "model.safetensors"))
    assert not any("lora" in name for name in a)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_a_model_rebuilt_from_gathered_weights_keeps_their_dtype(tiny_model_path, tmp_path):
    """Under FSDP2 the final model is rebuilt from the gathered state dict: a bf16 run saves bf16, LoRA merged."""
    trainer = RewardModelTrainer(config(tiny_model_path, tmp_path, use_lora=True, max_steps=1))
    trained = trainer.accelerator.unwrap_model(trainer.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained adapter, so merging it changes the weights
        for name, value in trained.named_parameters():
            if "lora_B" in name:
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
    gathered = {name: value.to(torch.bfloat16) for name, value in trained.state_dict().items()}
    rebuilt, _ = trainer.final_model(gathered)
    assert {p.dtype for p in rebuilt.parameters()} == {torch.bfloat16} and not hasattr(rebuilt, "peft_config")
    expected = trained.merge_and_unload().state_dict()
    for name, value in rebuilt.state_dict().items():
        torch.testing.assert_close(value, expected[name].to(torch.bfloat16), rtol=0.02, atol=1e-3, msg=name)


def test_rm_cli_trains_and_refuses_a_bad_key(tiny_model_path, tmp_path):
    out = tmp_path / "cli"
    result = moalign("train", "rm", "--model", str(tiny_model_path), "--task", "synthetic", "--max_steps", "2",
                 "--use_lora", "false", "--output_dir", str(out), "--eval_before", "false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "final" / "config.json").exists()
    bad = moalign("train", "rm", "--task", "synthetic", "--rule", "linear", "--output_dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown config key" in bad.stderr


def test_a_dataset_without_objectives_is_refused(tiny_model_path, tmp_path):
    with pytest.raises(ValueError, match="no objectives"):
        RewardModelTrainer(config(tiny_model_path, tmp_path), train_dataset=PreferenceDataset([], ()))


def test_harmless_reward_model_beats_chance_on_held_out_hh_rlhf_pairs(tiny_model_path, shared_data, tmp_path):
    """Real data: HH-RLHF harmless-base test pairs (80 % train, 20 % held out), the tiny model trained in full.
    Measured by hand on seeds 0, 3, 4: held-out accuracy 0.58-0.60 (one-sided bound 0.54-0.56)."""
    cfg = config(tiny_model_path, tmp_path, task=None, adapter="hh_rlhf", file_objectives=["harmless"],
                 train_files=[str(shared_data / "hh-rlhf-harmless-base-test" / "test.jsonl.gz")],
                 max_length=128, max_prompt_length=64, learning_rate=1e-3, max_steps=300, eval_before=False,
                 logging_steps=0)
    after = RewardModelTrainer(cfg).train()["eval_after"]["harmless"]
    assert after["pairs"] > 400
    assert after["lower_bound_one_sided"] > 0.5, after
