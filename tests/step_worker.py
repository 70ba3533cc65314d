"""Run the first steps of a DPO run on a fixed dataset with uneven labels, save each step's ``.grad``, then
evaluate on 9 held-out pairs.

Used in one process (imported) and in two (``torchrun ... step_worker.py OUT KEY=VALUE ...``): the runs
must compute the same update and the same evaluation whatever the layout of batches and processes.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from safetensors.torch import save_file

from moalign.data import PreferenceDataset
from moalign.tasks import BundledTaskConfig, build_synthetic_task
from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

OBJECTIVES = ["informative", "readable", "warm"]


def uneven_dataset(num_pairs: int = 24) -> PreferenceDataset:
    """Synthetic pairs where each objective keeps its label with probability 0.55: counts differ between
    micro-batches and processes, and some micro-batches miss an objective entirely."""
    data = build_synthetic_task(BundledTaskConfig(seed=0)).select_objectives(OBJECTIVES)
    rng = random.Random(1)
    pairs = []
    for pair in data.pairs[:num_pairs]:
        labels = {k: v for k, v in pair.labels.items() if rng.random() < 0.55}
        if not labels:  # a pair must label something
            first = next(iter(pair.labels))
            labels = {first: pair.labels[first]}
        pairs.append(dataclasses.replace(pair, labels=labels))
    return PreferenceDataset(pairs, tuple(OBJECTIVES))


def held_out_dataset() -> PreferenceDataset:
    """9 pairs after the training pairs: with two processes and batches of 4, one process runs a filler batch."""
    return PreferenceDataset(uneven_dataset(33).pairs[24:], tuple(OBJECTIVES))


def leave() -> None:
    """End a worker process once every process has finished its last collective, without tearing gloo down.

    Tearing it down raced in CI: a worker aborted ("terminate called without an active exception") at the end of a
    run whose results were all written, first when it left with its group alive (session 12), then after a barrier
    and ``end_training`` (session 17). So: a barrier, then a rendezvous through the launcher's store (a plain
    request and answer: once every process has counted in, no gloo message is still on its way), then exit
    without running teardown code. For the ``__main__`` of a worker script only."""
    import os

    import torch.distributed as dist

    dist.barrier()
    store = dist.distributed_c10d._get_default_store()
    store.add("moalign-worker-done", 1)
    while store.add("moalign-worker-done", 0) < dist.get_world_size():
        time.sleep(0.01)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def step_gradients(model_path: str, out: Path, steps: int = 3, **options) -> list[dict]:
    """Train ``steps`` steps, saving each step's ``.grad`` (by parameter name) as ``out/grad-<step>.safetensors``,
    then evaluate on the held-out pairs (``out/eval-<rank>.json``); returns each step's metrics."""
    base = dict(model=model_path, objectives=OBJECTIVES, use_lora=True, max_steps=steps, max_length=64,
                max_prompt_length=24, learning_rate=1e-3, logging_steps=0, eval_before=False,
                output_dir=str(out / "run"))
    config = MultiObjectiveDPOConfig(**{**base, **options})
    trainer = MultiObjectiveDPOTrainer(config, train_dataset=uneven_dataset(), eval_dataset=held_out_dataset())
    model = trainer.accelerator.unwrap_model(trainer.model)
    records = []
    for step in range(steps):
        metrics = trainer.compute_gradients(step)
        grads = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters() if p.grad is not None}
        if trainer.accelerator.is_main_process:
            save_file(grads, str(out / f"grad-{step}.safetensors"))
        trainer.apply_gradients(step)
        records.append({"metrics": metrics, "rule": trainer.rule.state_dict()})
    rank = trainer.accelerator.process_index
    (out / f"records-{rank}.json").write_text(json.dumps(records, default=str))
    (out / f"eval-{rank}.json").write_text(json.dumps(trainer.evaluate()))
    return records


if __name__ == "__main__":
    target = Path(sys.argv[1])
    settings = dict(arg.split("=", 1) for arg in sys.argv[3:])
    from moalign.config import load_config

    typed = {k: v for k, v in vars(load_config(MultiObjectiveDPOConfig, None, settings)).items() if k in settings}
    step_gradients(sys.argv[2], target, **typed)
    leave()
