"""Test helpers: the ``moalign`` command in a subprocess, two-process runs, a trainer killed mid-run, and random
LoRA adapters on the tiny model standing in for trained experts (fast, no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from moalign.models import LoraSpec, add_lora, load_model


def moalign(*args, cwd=None):
    """Run ``python -m moalign ARGS`` as a user would; returns the completed process."""
    return subprocess.run([sys.executable, "-m", "moalign", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=os.environ.copy(), timeout=600)


def run(args, cwd, **env):
    """Run ``args`` on the CPU as accelerate's launcher would set it up; fail the test with its stderr."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", **env}
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def two_processes(*args):
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (gloo on the CPU; a free port, so runs on parallel test
    workers do not meet on torchrun's default one)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def tiny_architecture(kind):
    """A tiny randomly initialised GPT-2 (``Conv1D`` layers) or Qwen2 (grouped KV heads) causal LM, seeded
    without touching the caller's random stream."""
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(0)
        if kind == "gpt2":
            return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64)).eval()
        return Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1, vocab_size=100)).eval()


def make_expert(tiny_model_path, path, seed, *, objectives=None, preference=None, scale=0.2):
    """Save a LoRA adapter with random A and B; with ``objectives`` and ``preference`` also the
    ``moalign_training.json`` a trained model carries."""
    model = add_lora(load_model(tiny_model_path), LoraSpec(r=4, alpha=8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(scale * torch.randn(p.shape, generator=generator))
    model.save_pretrained(path)
    if objectives is not None:
        summary = {"objectives": list(objectives), "rule": "linear", "config": {"preference": preference}}
        (path / "moalign_training.json").write_text(json.dumps(summary))
    return path


def make_reward_model(tiny_model_path, path, objectives=("helpful", "harmless"), seed=0):
    """A randomly initialised sequence-classification reward model on the tiny model, one head per objective."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from moalign.models import load_tokenizer

    labels = dict(enumerate(objectives))
    config = AutoConfig.from_pretrained(tiny_model_path, num_labels=len(objectives), id2label=labels,
                                        label2id={v: k for k, v in labels.items()})
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    load_tokenizer(tiny_model_path).save_pretrained(path)
    return path


def train_rl_experts(tiny_model_path, root, objectives, *, steps):
    """One LoRA expert per objective, trained here by RL (MORLHF, one-hot preference) on the bundled task, as
    HoE experts in objective order."""
    import numpy as np

    from moalign.hoe import expert_from_adapter
    from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer

    experts = []
    for k, objective in enumerate(objectives):
        one_hot = list(np.eye(len(objectives))[k])
        cfg = MultiObjectiveRLConfig(model=str(tiny_model_path), task="bundled", output_dir=str(root / objective),
                                     per_device_batch_size=8, max_new_tokens=24, eval_prompts=8, use_lora=True,
                                     lora_r=8, lora_alpha=16, kl_coef=0.01, learning_rate=1e-2,
                                     rewards=list(objectives), rule="morlhf", preference=one_hot, max_steps=steps,
                                     eval_before=False, top_k=50)  # as tests/train/test_rl_trainer.py says why
        MultiObjectiveRLTrainer(cfg).train()
        experts.append(expert_from_adapter(objective, one_hot, root / objective / "final"))
    return experts


def train_until_killed(trainer, step, monkeypatch):
    """Run ``trainer.train()`` as if the process were killed when step ``step`` (0-based) starts."""
    original = trainer.training_step

    def dies(current):
        if current == step:
            raise KeyboardInterrupt("killed")
        return original(current)

    monkeypatch.setattr(trainer, "training_step", dies)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
