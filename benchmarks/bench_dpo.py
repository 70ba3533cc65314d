"""Step time of multi-objective DPO relative to TRL's DPOTrainer, same model, data and batch, one process.

    .venv/bin/pip install trl==1.16.0   # the anchor; not a moalign dependency
    python benchmarks/bench_dpo.py [--steps 12] [--rounds 2] [--hidden 512 --layers 8] [--threads 2]

Both sides train a LoRA adapter (r 8, all linear layers) on a freshly built Llama (26M parameters by
default) with the reference = adapters disabled, fp32, batch 8 pairs of ~64 tokens. Configurations:
TRL at K = 1; moalign at K = 1 (linear rule: one backward); mgda_decoupled with exact per-objective
geometry every step at K = 1..4 by the per-pair method (one backward) and at K = 3 by K autograd
vector-Jacobian products; and K = 3 by autograd with the Gram refreshed every 4 steps. Each round runs
every configuration once; the table shows the median step time (first 2 steps of each run dropped)
and its ratio to TRL's median in the same round.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from moalign.data import PreferenceDataset, make_pair  # noqa: E402
from moalign.models import build_tiny_model, load_model, load_tokenizer  # noqa: E402
from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer  # noqa: E402

WORDS = "the a river city friend garden plan answer reason step team book light water morning kind clear".split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_pairs(n: int, k: int, seed: int = 0) -> PreferenceDataset:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        labels = {f"obj{j}": rng.choice(["a", "b"]) for j in range(k)}
        pairs.append(make_pair(sentence(rng, 12), sentence(rng, 40), sentence(rng, 40), labels))
    return PreferenceDataset(pairs, tuple(f"obj{j}" for j in range(k)))


def time_trl(model_dir: str, dataset: PreferenceDataset, steps: int, out: str) -> list[float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    rows = {"prompt": [p.prompt for p in dataset], "chosen": [p.response_a for p in dataset],
            "rejected": [p.response_b for p in dataset]}
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    config = DPOConfig(output_dir=out, per_device_train_batch_size=8, max_steps=steps, learning_rate=1e-4, beta=0.1,
                       max_length=128, report_to="none", logging_steps=1000, save_strategy="no", bf16=False,
                       gradient_checkpointing=False, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=load_model(model_dir, dtype="float32"), ref_model=None, args=config,
                         train_dataset=Dataset.from_dict(rows), processing_class=load_tokenizer(model_dir),
                         peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                target_modules="all-linear"),
                         callbacks=[Timer()])
    trainer.train()
    return times


def time_moalign(model_dir: str, dataset: PreferenceDataset, steps: int, out: str, rule: str, gram_every: int,
                 method: str = "auto") -> list[float]:
    config = MultiObjectiveDPOConfig(model=model_dir, rule=rule, gram_every=gram_every, gradient_method=method,
                                     per_device_batch_size=8, learning_rate=1e-4, beta=0.1, max_length=128,
                                     max_prompt_length=32, max_steps=steps, logging_steps=0, output_dir=out, dtype="float32")
    trainer = MultiObjectiveDPOTrainer(config, train_dataset=dataset, eval_dataset=PreferenceDataset([], dataset.objectives))
    times = []
    for step in range(steps):
        start = time.perf_counter()
        trainer.training_step(step)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="bench-dpo-")
    model_dir = str(build_tiny_model(f"{work}/model", hidden_size=args.hidden, num_layers=args.layers,
                                     num_heads=8, intermediate_size=int(2.75 * args.hidden)))
    n_params = sum(p.numel() for p in load_model(model_dir).parameters())
    configs = [("TRL DPOTrainer", 1, None, 1, None), ("moalign linear", 1, "linear", 1, "auto")]
    configs += [("moalign mgda_decoupled exact, per_pair", k, "mgda_decoupled", 1, "per_pair") for k in (1, 2, 3, 4)]
    configs += [("moalign mgda_decoupled exact, autograd", 3, "mgda_decoupled", 1, "autograd")]
    configs += [("moalign mgda_decoupled gram_every=4, autograd", 3, "mgda_decoupled", 4, "autograd")]
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers, {n_params / 1e6:.1f}M params; LoRA r 8; "
          f"batch 8 pairs; {args.threads} threads; {args.steps} steps per run, first 2 dropped; {args.rounds} rounds")
    results: dict[str, list[tuple[float, float]]] = {}
    for round_index in range(args.rounds):
        medians = {}
        for name, k, rule, every, method in configs:
            data = make_pairs(8 * args.steps, k, seed=round_index)
            out = f"{work}/{round_index}-{len(medians)}"
            if rule is None:
                times = time_trl(model_dir, data, args.steps, out)
            else:
                times = time_moalign(model_dir, data, args.steps, out, rule, every, method)
            medians[(name, k)] = statistics.median(times[2:])
        base = medians[("TRL DPOTrainer", 1)]
        for key, value in medians.items():
            results.setdefault(f"{key[0]} K={key[1]}", []).append((value, value / base))
    print("| configuration | " + " | ".join(f"round {r + 1} s/step (× TRL)" for r in range(args.rounds)) + " |")
    print("|---|" + "---|" * args.rounds)
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(f"{s:.3f} ({ratio:.2f}×)" for s, ratio in rows) + " |")


if __name__ == "__main__":
    main()
