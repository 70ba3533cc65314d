"""Router experts trained by PPO on smooth Tchebycheff raise the Tchebycheff objective at their anchor on the
bundled task, starting from experts trained here by RL; only the router changes, and the result loads back."""

import json
from pathlib import Path

import pytest
import torch

from moalign.config import ConfigError
from helpers import train_rl_experts
from moalign.hoe import HoEModel
from moalign.hoe.train_routers import HoERouterTrainer, RouterTrainingConfig
from moalign.models import load_model, load_tokenizer

OBJECTIVES = ["informative", "readable"]


@pytest.fixture(scope="module")
def hoe_dir(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("routers")
    experts = train_rl_experts(tiny_model_path, root, OBJECTIVES, steps=60)
    hoe = HoEModel.from_experts(load_model(tiny_model_path), experts, OBJECTIVES, base_model=str(tiny_model_path),
                                tokenizer=load_tokenizer(tiny_model_path))
    hoe.save_pretrained(root / "hoe")
    return root / "hoe"


def router_config(hoe_dir, out, **overrides):
    values = dict(hoe=str(hoe_dir), rewards=OBJECTIVES, task="bundled", output_dir=str(out), per_device_batch_size=8,
                  max_new_tokens=24, eval_prompts=64, learning_rate=3e-2, max_steps=40, eval_steps=10, logging_steps=1,
                  kl_coef=0.01, top_k=50)  # the tiny model's 50 likeliest tokens: see tests/train/test_rl_trainer.py
    return RouterTrainingConfig(**{**values, **overrides})


def test_router_ppo_raises_the_tchebycheff_objective(hoe_dir, tmp_path):
    trainer = HoERouterTrainer(router_config(hoe_dir, tmp_path / "out"))
    initial = {k: v.clone() for k, v in trainer.policy().hoe.routers.state_dict().items()}
    trainer.train()
    curve = [r for r in map(json.loads, (tmp_path / "out" / "log.jsonl").read_text().splitlines()) if "eval" in r]
    start = curve[0]["eval"]["tchebycheff"]["mean"]
    tail = [r["eval"]["tchebycheff"]["mean"] for r in curve[-3:]]
    assert min(tail) > start, (start, tail)  # the last three evaluations, not one number
    # the KL reference kept the untrained router; the trained one moved; experts and base are untouched
    reference = trainer.frozen_reference.hoe.routers.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in initial.items())
    trained = HoEModel.from_pretrained(tmp_path / "out" / "final")
    assert any(not torch.equal(trained.routers.state_dict()[k], v) for k, v in initial.items())
    original = HoEModel.from_pretrained(hoe_dir)
    for module, layer in original.mixture_layers.items():
        assert torch.equal(trained.mixture_layers[module].lora_B, layer.lora_B)
    assert trained.config.anchors[-1].has_router and trained.config.anchors[-1].preference == [0.5, 0.5]


def test_router_config_errors(hoe_dir, tmp_path):
    with pytest.raises(ConfigError, match="HoE model folder"):
        RouterTrainingConfig(rewards=OBJECTIVES, task="bundled")
    with pytest.raises(ConfigError, match="do not match"):
        HoERouterTrainer(router_config(hoe_dir, tmp_path / "x", rewards=["informative", "concise"]))


def test_train_routers_on_the_command_line(hoe_dir, tmp_path):
    from helpers import moalign

    out = moalign("hoe", "train-routers", "--hoe", hoe_dir, "--rewards", ",".join(OBJECTIVES), "--task", "bundled",
                  "--max_steps", "2", "--eval_prompts", "8", "--per_device_batch_size", "4", "--max_new_tokens", "8",
                  "--calibration_prompts", "4", "--anchor", "0.3,0.7", "--output_dir", tmp_path / "cli")
    assert out.returncode == 0, out.stderr
    trained = HoEModel.from_pretrained(tmp_path / "cli" / "final")
    assert trained.config.anchors[-1].has_router and trained.config.anchors[-1].preference == pytest.approx([0.3, 0.7])
    assert '"tchebycheff"' in out.stdout


def test_router_training_under_fsdp2_matches_data_parallel_and_resumes(hoe_dir, tmp_path):
    """Two processes, data-parallel and sharded (FSDP2: generation synced across ranks, the saved model rebuilt whole
    from the gathered weights), train the same router; the sharded run resumed from its step-2 checkpoint ends there
    too, and only the router differs from the HoE model trained from."""
    from helpers import run, two_processes
    from safetensors.torch import load_file

    fsdp_worker = str(Path(__file__).resolve().parents[1] / "train" / "fsdp_cpu_worker.py")
    fsdp_env = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
                "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer"}
    args = ["hoe", "train-routers", "--hoe", str(hoe_dir), "--rewards", ",".join(OBJECTIVES), "--task", "bundled",
            "--max_steps", "3", "--save_steps", "2", "--eval_prompts", "5", "--per_device_batch_size", "4",
            "--max_new_tokens", "8", "--ideal_point", "0,0", "--learning_rate", "3e-2", "--eval_before", "false"]
    run(two_processes("-m", "moalign", *args, "--output_dir", str(tmp_path / "ddp")), tmp_path)
    run(two_processes(fsdp_worker, *args, "--output_dir", str(tmp_path / "fsdp")), tmp_path, **fsdp_env)
    run(two_processes(fsdp_worker, *args, "--output_dir", str(tmp_path / "resumed"),
                      "--resume", str(tmp_path / "fsdp" / "checkpoint-2")), tmp_path, **fsdp_env)
    summary = json.loads((tmp_path / "fsdp" / "final" / "moalign_training.json").read_text())
    assert summary["processes"] == 2 and summary["distributed"] == "FSDP"
    saved = {name: load_file(str(tmp_path / name / "final" / "hoe_model.safetensors")) for name in ("ddp", "fsdp", "resumed")}
    original = load_file(str(hoe_dir / "hoe_model.safetensors"))
    router = {k for k in saved["fsdp"] if k not in original}
    assert router and all(k.startswith("routers.") for k in router)
    for key, value in saved["fsdp"].items():
        torch.testing.assert_close(value, saved["ddp"][key], rtol=1e-4, atol=1e-6, msg=key)
        assert torch.equal(value, saved["resumed"][key]), key
        if key in original:
            assert torch.equal(value, original[key]), key  # experts untouched
    assert HoEModel.from_pretrained(tmp_path / "fsdp" / "final").config.anchors[-1].has_router
