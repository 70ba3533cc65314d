"""Data-parallel training (2 CPU processes, gloo, started by torchrun) matches one process.

``accelerate launch --cpu`` starts a single process whatever ``--num_processes`` says, so the test
uses ``torch.distributed.run`` with ``ACCELERATE_USE_CPU`` set, and checks the run had two processes.
"""

import json
import os
import subprocess
import sys

import torch
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


def run(args, cwd):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}  # what accelerate's own launcher sets for CPU runs
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]


def test_two_processes_match_one_process_with_the_same_pairs(tiny_model_path, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(model=tiny_model_path, out=tmp_path / "ddp"))
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "moalign", "train", "dpo",
         "--config", str(cfg), "--per_device_batch_size", "4"], tmp_path)
    assert json.loads((tmp_path / "ddp" / "final" / "moalign_training.json").read_text())["processes"] == 2
    single = tmp_path / "single.yaml"
    single.write_text(CONFIG.format(model=tiny_model_path, out=tmp_path / "one"))
    run([sys.executable, "-m", "moalign", "train", "dpo", "--config", str(single), "--per_device_batch_size", "8",
         "--gradient_method", "autograd"], tmp_path)
    ddp = load_file(str(tmp_path / "ddp" / "final" / "adapter_model.safetensors"))
    one = load_file(str(tmp_path / "one" / "final" / "adapter_model.safetensors"))
    assert ddp.keys() == one.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
