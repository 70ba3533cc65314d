"""Data-parallel and sharded training (2 CPU processes, gloo, started by torchrun) match one process.

``accelerate launch --cpu`` starts a single process whatever ``--num_processes`` says, so the tests use
``torch.distributed.run`` with ``ACCELERATE_USE_CPU`` set, and check the run had two processes. FSDP2
goes through tests/train/fsdp_cpu_worker.py, since accelerate enables FSDP on accelerators only.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import run, two_processes
from safetensors.torch import load_file

CONFIG = """model: {model}
task: synthetic
objectives: [informative, warm]
use_lora: true
max_steps: 3
max_length: 64
max_prompt_length: 24
logging_steps: 0
eval_before: false
output_dir: {out}
"""
FSDP2_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
             "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer"}
WORKER = Path(__file__).resolve().parent / "fsdp_cpu_worker.py"


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "adapter_model.safetensors"))


def assert_same_weights(got, expected, **tolerance):
    assert got.keys() == expected.keys()
    for key in got:
        torch.testing.assert_close(got[key], expected[key], msg=key, **tolerance)


@pytest.fixture(scope="module")
def one_process(tiny_model_path, tmp_path_factory):
    """The reference: the same 3 steps over the same 8 pairs a step, in one process, exact per-objective gradients."""
    tmp = tmp_path_factory.mktemp("one")
    (tmp / "c.yaml").write_text(CONFIG.format(model=tiny_model_path, out=tmp / "one"))
    run([sys.executable, "-m", "moalign", "train", "dpo", "--config", str(tmp / "c.yaml"), "--per_device_batch_size", "8",
         "--gradient_method", "autograd"], tmp)
    return tmp / "one"


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "final" / "moalign_training.json").read_text())


def assert_same_evaluation(got: dict, expected: dict):
    """Reports of the held-out pairs: each pair counted once, the same figures up to float32 sums."""
    assert got.keys() == expected.keys() and expected
    for name, want in expected.items():
        assert got[name]["pairs"] == want["pairs"] > 0, name
        for key in ("accuracy", "loss", "margin"):
            assert got[name][key] == pytest.approx(want[key], rel=1e-4, abs=5e-5), (name, key)


def test_two_processes_match_one_process_with_the_same_pairs(tiny_model_path, tmp_path, one_process):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(model=tiny_model_path, out=tmp_path / "ddp"))
    run(two_processes("-m", "moalign", "train", "dpo", "--config", str(cfg), "--per_device_batch_size", "4"), tmp_path)
    ddp = summary(tmp_path / "ddp")
    assert ddp["processes"] == 2 and ddp["distributed"] == "MULTI_CPU"
    assert_same_weights(adapter(tmp_path / "ddp"), adapter(one_process), rtol=1e-4, atol=1e-6)
    assert_same_evaluation(ddp["eval_after"], summary(one_process)["eval_after"])  # each process scored half


def test_fsdp2_sharded_gram_matches_one_process_and_resumes(tiny_model_path, tmp_path, one_process):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(model=tiny_model_path, out=tmp_path / "fsdp"))
    train = two_processes(str(WORKER), "train", "dpo", "--config", str(cfg), "--per_device_batch_size", "4", "--save_steps", "2")
    out = run(train, tmp_path, **FSDP2_ENV)
    assert out.stdout.count("saved:") == 1  # rank 0 reports, the other rank stays quiet
    fsdp = summary(tmp_path / "fsdp")
    assert fsdp["processes"] == 2 and fsdp["distributed"] == "FSDP"
    sharded = adapter(tmp_path / "fsdp")
    assert_same_weights(sharded, adapter(one_process), rtol=1e-4, atol=1e-6)
    assert_same_evaluation(fsdp["eval_after"], summary(one_process)["eval_after"])

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "fsdp" / "checkpoint-2", resumed_dir / "checkpoint-2")  # gathered, whole tensors
    run([*train, "--output_dir", str(resumed_dir), "--resume"], tmp_path, **FSDP2_ENV)
    assert json.loads((resumed_dir / "final" / "moalign_training.json").read_text())["resumed_at_step"] == 2
    assert_same_weights(adapter(resumed_dir), sharded, rtol=0, atol=0)


@pytest.mark.parametrize("kind, fsdp2, message", [("FSDP", False, "fsdp_version: 2"), ("DEEPSPEED", False, "DeepSpeed")])
def test_gram_rules_refuse_sharding_they_cannot_read(kind, fsdp2, message):
    from accelerate.utils import DistributedType

    from moalign.config import ConfigError
    from moalign.moo import get_rule
    from moalign.train.objective_step import check_distributed_geometry

    accelerator = SimpleNamespace(distributed_type=DistributedType[kind], is_fsdp2=fsdp2)
    with pytest.raises(ConfigError, match=message):
        check_distributed_geometry(get_rule("mgda_decoupled"), accelerator, "mgda_decoupled")
    # rules that need only losses (one backward of the weighted sum) or the representation Gram work anywhere
    check_distributed_geometry(get_rule("linear"), accelerator, "linear")
    check_distributed_geometry(get_rule("mgda_ub"), accelerator, "mgda_ub")


def test_reward_model_under_fsdp2_matches_one_process_and_loads_in_transformers(tiny_model_path, tmp_path):
    """Sharded LoRA training of the K-head reward model takes the steps one process takes with the same pairs; its
    saved folder (rebuilt whole from the gathered shards, LoRA merged) loads with plain transformers."""
    from transformers import AutoModelForSequenceClassification

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(model=tiny_model_path, out=tmp_path / "rm"))
    run([sys.executable, "-m", "moalign", "train", "rm", "--config", str(cfg), "--per_device_batch_size", "8",
         "--output_dir", str(tmp_path / "one")], tmp_path)
    run(two_processes(str(WORKER), "train", "rm", "--config", str(cfg), "--per_device_batch_size", "4",
                      "--output_dir", str(tmp_path / "fsdp")), tmp_path, **FSDP2_ENV)
    fsdp = summary(tmp_path / "fsdp")
    assert fsdp["processes"] == 2 and fsdp["distributed"] == "FSDP"
    one, sharded = (load_file(str(tmp_path / d / "final" / "model.safetensors")) for d in ("one", "fsdp"))
    assert not any("lora" in key for key in sharded)
    assert_same_weights(sharded, one, rtol=1e-4, atol=1e-6)
    assert_same_evaluation(fsdp["eval_after"], summary(tmp_path / "one")["eval_after"])
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "fsdp" / "final")
    assert model.config.id2label == {0: "informative", 1: "warm"}


def test_rl_under_fsdp2_matches_data_parallel_and_resumes(tiny_model_path, tmp_path):
    """Sharded PPO (generation synced across ranks, value heads whole on every rank) takes the steps data-parallel
    PPO takes with the same prompts and seeds; resumed from its gathered step-2 checkpoint it ends where it ended."""
    args = ["train", "rl", "--model", str(tiny_model_path), "--task", "bundled", "--rewards", "concise,readable",
            "--per_device_batch_size", "4", "--max_new_tokens", "8", "--eval_prompts", "4", "--max_steps", "3",
            "--save_steps", "2", "--logging_steps", "1", "--eval_before", "false", "--whiten_rewards", "true"]
    run(two_processes("-m", "moalign", *args, "--output_dir", str(tmp_path / "ddp")), tmp_path)
    run(two_processes(str(WORKER), *args, "--output_dir", str(tmp_path / "fsdp")), tmp_path, **FSDP2_ENV)
    fsdp = summary(tmp_path / "fsdp")
    assert fsdp["processes"] == 2 and fsdp["distributed"] == "FSDP"
    sharded = adapter(tmp_path / "fsdp")
    assert_same_weights(sharded, adapter(tmp_path / "ddp"), rtol=1e-4, atol=1e-6)
    run(two_processes(str(WORKER), *args, "--output_dir", str(tmp_path / "resumed"),
                      "--resume", str(tmp_path / "fsdp" / "checkpoint-2")), tmp_path, **FSDP2_ENV)
    assert_same_weights(adapter(tmp_path / "resumed"), sharded, rtol=0, atol=0)


def test_rl_under_fsdp1_is_refused_with_a_clear_error(tiny_model_path, tmp_path):
    out = subprocess.run(two_processes(str(WORKER), "train", "rl", "--model", str(tiny_model_path), "--task", "bundled",
                                       "--rewards", "concise", "--output_dir", str(tmp_path / "rl")),
                         capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
                              **FSDP2_ENV, "FSDP_VERSION": "1"})
    assert out.returncode != 0
    assert "moalign: error: RL training runs in one process, data-parallel (DDP) or under FSDP2" in out.stderr


def test_rl_runs_data_parallel_and_resumes_from_its_checkpoint_to_the_same_policy(tiny_model_path, tmp_path):
    """Two processes each sample their own prompts (rank-aware sampler, per-rank seeds); the value heads' gradients
    are averaged so every rank keeps the same heads, and the reward whitening's statistics cover both ranks' rewards
    so every rank keeps the same (the checkpoint holds rank 0's); a run resumed from the step-2 checkpoint ends where
    the uninterrupted run ended."""
    args = ["-m", "moalign", "train", "rl", "--model", str(tiny_model_path), "--task", "bundled", "--rewards",
            "concise,readable", "--per_device_batch_size", "4", "--max_new_tokens", "8", "--eval_prompts", "4",
            "--max_steps", "3", "--save_steps", "2", "--logging_steps", "1", "--eval_before", "false",
            "--whiten_rewards", "true"]
    run(two_processes(*args, "--output_dir", str(tmp_path / "full")), tmp_path)
    run(two_processes(*args, "--output_dir", str(tmp_path / "resumed"),
                      "--resume", str(tmp_path / "full" / "checkpoint-2")), tmp_path)
    resumed = summary(tmp_path / "resumed")
    assert resumed["processes"] == 2 and resumed["resumed_at_step"] == 2
    assert {"value_heads.weight", "value_heads.bias"} <= set(
        load_file(str(tmp_path / "full" / "checkpoint-2" / "trainable.safetensors")))
    assert_same_weights(adapter(tmp_path / "resumed"), adapter(tmp_path / "full"), rtol=0, atol=0)
