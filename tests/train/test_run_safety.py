"""A run never crashes on ordinary data layouts, never loses work, and never silently misreads its settings."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from step_worker import OBJECTIVES, uneven_dataset

from moalign.config import ConfigError, load_config, parse_overrides
from moalign.data import Label, PreferenceDataset
from moalign.train import CheckpointError, MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer


def config(tiny_model_path, tmp_path, **overrides):
    base = dict(model=str(tiny_model_path), objectives=OBJECTIVES, use_lora=True, per_device_batch_size=4,
                max_length=64, max_prompt_length=24, learning_rate=1e-3, logging_steps=1, eval_before=False,
                output_dir=str(tmp_path / "run"))
    return MultiObjectiveDPOConfig(**{**base, **overrides})


def test_epoch_ends_with_accumulation_never_give_an_empty_batch(tiny_model_path, tmp_path):
    data = PreferenceDataset(uneven_dataset().pairs[:13], tuple(OBJECTIVES))  # 13 pairs, 8 a step
    for leftover, steps_per_epoch in (("wrap", 2), ("drop", 1)):
        cfg = config(tiny_model_path, tmp_path / leftover, gradient_accumulation_steps=2, num_epochs=3,
                     leftover=leftover)
        trainer = MultiObjectiveDPOTrainer(cfg, train_dataset=data)
        assert trainer.total_steps == 3 * steps_per_epoch
        summary = trainer.train()
        assert summary["steps"] == 3 * steps_per_epoch and summary["skipped_steps"] == 0


def test_a_step_without_any_strict_label_is_skipped_and_logged(tiny_model_path, tmp_path):
    ties = [dataclasses.replace(p, labels={k: Label.TIE for k in p.labels}) for p in uneven_dataset().pairs[:8]]
    trainer = MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=2, rule="cagrad"),
                                       train_dataset=PreferenceDataset(ties, tuple(OBJECTIVES)))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    summary = trainer.train()
    assert summary["skipped_steps"] == 2
    for name, p in trainer.model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, before[name]), name
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log if "skipped" in r] == ["no objective has a strictly labelled pair in this step"] * 2


def test_group_dro_state_survives_a_resume(tiny_model_path, tmp_path):
    options = dict(rule="group_dro", rule_options={"step_size": 1.0}, max_steps=4, save_steps=2)
    straight = MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path / "a", **options), train_dataset=uneven_dataset())
    straight.train()
    first = MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path / "b", **{**options, "max_steps": 4}),
                                     train_dataset=uneven_dataset())
    real_step = first.training_step
    first.training_step = lambda step: (_ for _ in ()).throw(KeyboardInterrupt()) if step == 3 else real_step(step)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    saved = json.loads((tmp_path / "b" / "run" / "checkpoint-2" / "trainer_state.json").read_text())
    assert saved["rule"]["q"] != [1 / 3] * 3  # the state moved and is in the checkpoint
    resumed = MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path / "b", **options, resume_from="latest"),
                                       train_dataset=uneven_dataset())
    resumed.train()
    assert resumed.rule.q.tolist() == straight.rule.q.tolist()
    got = load_file(str(tmp_path / "b" / "run" / "final" / "adapter_model.safetensors"))
    want = load_file(str(tmp_path / "a" / "run" / "final" / "adapter_model.safetensors"))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_an_output_dir_holding_a_run_is_refused_unless_resumed_or_overwritten(tiny_model_path, tmp_path):
    data = uneven_dataset()
    MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=2, save_steps=1), train_dataset=data).train()
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint-best").mkdir()  # a folder of the user's: never parsed, rotated or removed
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=2), train_dataset=data).train()
    with pytest.raises(ConfigError, match=r"other settings \(learning_rate: 0.001 -> 0.01\)"):
        MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=2, learning_rate=1e-2, resume_from="latest"),
                                 train_dataset=data).train()
    with pytest.raises(CheckpointError, match="past this run's 1 steps"):
        MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=1, resume_from=str(run_dir / "checkpoint-2")),
                                 train_dataset=data).train()
    fresh = MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, max_steps=1, overwrite_output_dir=True),
                                     train_dataset=data)
    summary = fresh.train()
    assert summary["steps"] == 1 and not (run_dir / "checkpoint-2").exists() and (run_dir / "checkpoint-best").exists()
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 1]  # step 1 and the eval after it: the old run's log is gone


def test_an_unwritable_output_dir_fails_before_the_model_loads(tiny_model_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, output_dir=str(blocker)), train_dataset=uneven_dataset())
    with pytest.raises(ConfigError, match="not writable"):
        MultiObjectiveDPOTrainer(config(tiny_model_path, tmp_path, output_dir=str(blocker / "sub")),
                                 train_dataset=uneven_dataset())


def test_configs_refuse_what_the_trainer_cannot_run(tiny_model_path, tmp_path):
    with pytest.raises(ConfigError, match="moalign train rl"):
        config(tiny_model_path, tmp_path, rule="pama")
    with pytest.raises(ConfigError, match="max_steps must be at least 1"):
        config(tiny_model_path, tmp_path, max_steps=0)
    with pytest.raises(ConfigError, match="rule_options"):
        config(tiny_model_path, tmp_path, rule="group_dro", rule_options={"step_sise": 0.1})
    with pytest.raises(ConfigError, match="leftover"):
        config(tiny_model_path, tmp_path, leftover="pad")


def test_overrides_keep_dashes_in_values_and_lists_become_lists(tmp_path):
    assert parse_overrides(["--output-dir=runs/my-run", "--preference=-0.5,1"]) == {
        "output_dir": "runs/my-run", "preference": "-0.5,1"}
    cfg = load_config(MultiObjectiveDPOConfig, None, {"task": "synthetic", "lora_target_modules": "q_proj,v_proj",
                                                      "output_dir": "runs/my-run"})
    assert cfg.lora_target_modules == ["q_proj", "v_proj"] and cfg.output_dir == "runs/my-run"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("task: synthetic\nlora_target_modules: [q_proj, v_proj]\n")
    assert load_config(MultiObjectiveDPOConfig, yaml_file).lora_target_modules == ["q_proj", "v_proj"]
    assert load_config(MultiObjectiveDPOConfig, yaml_file, {"lora_target_modules": "[k_proj]"}).lora_target_modules == ["k_proj"]
    assert load_config(MultiObjectiveDPOConfig, None, {"lora_target_modules": "all-linear"}).lora_target_modules == "all-linear"
    assert load_config(MultiObjectiveDPOConfig, None, {"lora_target_modules": "q_proj"}).lora_target_modules == ["q_proj"]


def test_a_saved_adapter_records_a_portable_base_model_name(tmp_path):
    from moalign.eval.methods import recorded_base_model
    from moalign.models import DEFAULT_MODEL_HUB_ID, portable_model_name

    assert portable_model_name("smollm2") == DEFAULT_MODEL_HUB_ID and portable_model_name("org/model") == "org/model"
    trainer = MultiObjectiveDPOTrainer(MultiObjectiveDPOConfig(
        model="tiny", objectives=OBJECTIVES, per_device_batch_size=4, max_length=64, max_prompt_length=24, max_steps=1,
        logging_steps=0, eval_before=False, output_dir=str(tmp_path / "run")), train_dataset=uneven_dataset())
    trainer.train()
    final = tmp_path / "run" / "final"
    assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"  # not a cache path
    summary = json.loads((final / "moalign_training.json").read_text())
    assert summary["base_model"] == "tiny" and recorded_base_model(final) == summary["base_model_local"]


def test_a_training_file_too_small_for_the_eval_split_says_so(tmp_path):
    from moalign.data import DataError, load_training_data

    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "labels": {"x": "a"}}) + "\n")
    cfg = MultiObjectiveDPOConfig(train_files=[str(path)], eval_fraction=0.1, output_dir=str(tmp_path / "run"))
    with pytest.raises(DataError, match="1 pair\\(s\\): too few to hold out eval_fraction 0.1"):
        load_training_data(cfg)


def test_processing_class_is_the_tokenizer_and_the_accelerate_precision_is_honoured(tiny_model_path, tmp_path,
                                                                                      tiny_tokenizer, monkeypatch):
    cfg = config(tiny_model_path, tmp_path, max_steps=1)
    trainer = MultiObjectiveDPOTrainer(cfg, processing_class=tiny_tokenizer, train_dataset=uneven_dataset())
    assert trainer.tokenizer is tiny_tokenizer
    with pytest.raises(TypeError, match="give the tokenizer once"):
        MultiObjectiveDPOTrainer(cfg, processing_class=tiny_tokenizer, tokenizer=tiny_tokenizer)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` sets from its config
    assert MultiObjectiveDPOTrainer(cfg, train_dataset=uneven_dataset()).accelerator.mixed_precision == "bf16"
    explicit = config(tiny_model_path, tmp_path, max_steps=1, mixed_precision="no")  # the YAML wins
    assert MultiObjectiveDPOTrainer(explicit, train_dataset=uneven_dataset()).accelerator.mixed_precision == "no"
