"""One multi-objective RL step split into its parts, and side by side with TRL's GRPOTrainer, one process.

    .venv/bin/pip install trl==1.16.0   # the anchor; not a moalign dependency
    python benchmarks/bench_rl.py [--steps 8] [--rounds 2] [--prompts 4 --generations 4 --tokens 32] [--threads 2]
                                  [--mixed-precision no|bf16] [--engine generate|decode]

Every configuration trains a LoRA adapter (r 8, all linear layers) on the same freshly built Llama (26M
parameters by default) at the same precision (``--mixed-precision``: TRL's configs default to bf16 autocast,
moalign's to none, so both are set explicitly), on the same bundled prompts, with K = 3 rewards (concise, readable, warm: the
built-in scorers, given to TRL as reward functions with ``reward_weights``), the same group size and
generation length, a KL penalty to the reference (adapters disabled) on both sides:

* ``trl_grpo``: TRL's GRPOTrainer (beta 0.01, one generation and one update per step);
* ``pama_group``: moalign PAMA, critic-free (group baseline over the samples of each prompt; the KL in the
  loss with the k3 estimator, as GRPO);
* ``pama_gae``: moalign PAMA with one value head per objective and GAE;
* ``morlhf_gae``: moalign MORLHF (weights 1/3) with value heads, for scale.

``--engine decode`` samples moalign's rollouts with its own decoding loop (``DecodeEngine``) instead of
``generate``. Each round runs every configuration once; the table shows median step times (first 2 steps of a run
dropped), their ratio to TRL's in the same round, and for moalign the share of the step spent in
generation, rewards, the rollout's log-prob/value passes, the update, and PAMA's closed-form solve.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from moalign.models import build_tiny_model  # noqa: E402
from moalign.models.decoding import eos_ids  # noqa: E402
from moalign.objectives import get_scorer  # noqa: E402
from moalign.tasks import bundled_prompts  # noqa: E402
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer  # noqa: E402
from moalign.train.rollout import DecodeEngine  # noqa: E402

OBJECTIVES = ("concise", "readable", "warm")


def timed(phases: dict[str, float], name: str, fn):
    """``fn`` wrapped so that its wall time adds to ``phases[name]``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] += time.perf_counter() - start
    return wrapper


def time_moalign(model_dir: str, args: argparse.Namespace, rule: str, advantage: str, out: str) -> tuple[list[float], dict]:
    kl = {"kl_penalty": "loss", "kl_estimator": "k3"} if advantage == "group" else {}  # GRPO's KL, as TRL
    config = MultiObjectiveRLConfig(
        **kl, model=model_dir, task="bundled", rewards=list(OBJECTIVES), rule=rule, advantage=advantage,
        num_generations=args.generations, per_device_batch_size=args.prompts, max_new_tokens=args.tokens,
        max_steps=args.steps, eval_prompts=0, eval_before=False, logging_steps=0, kl_coef=0.01, learning_rate=1e-4,
        output_dir=out, overwrite_output_dir=True, lora_r=8, lora_alpha=16, mixed_precision=args.mixed_precision,
        seed=0, max_prompts=args.prompts * (args.steps + 2))  # TRL's prompts: bundled_prompts(n, seed=0)
    trainer = MultiObjectiveRLTrainer(config)
    if args.engine == "decode":
        trainer.engine = DecodeEngine(trainer.tokenizer, eos_ids(trainer.policy(), trainer.tokenizer))
    phases: dict[str, float] = defaultdict(float)
    trainer.engine.generate = timed(phases, "generation", trainer.engine.generate)
    trainer.score = timed(phases, "rewards", trainer.score)
    trainer.reference_logprobs = timed(phases, "rollout passes", trainer.reference_logprobs)
    trainer.combined_advantage = timed(phases, "pama solve", trainer.combined_advantage)
    experience = trainer.make_experience
    trainer.make_experience = timed(phases, "experience", experience)
    times, shares = [], defaultdict(list)
    for step in range(args.steps):
        phases.clear()
        start = time.perf_counter()
        trainer.training_step(step)
        total = time.perf_counter() - start
        times.append(total)
        rollout_passes = phases["experience"] - phases["generation"] - phases["rewards"]
        parts = {"generation": phases["generation"], "rewards": phases["rewards"], "rollout passes": rollout_passes,
                 "update": total - phases["experience"], "pama solve": phases["pama solve"]}
        for name, seconds in parts.items():
            shares[name].append(seconds / total)
    return times[2:], {k: statistics.median(v[2:]) for k, v in shares.items()}


def time_trl(model_dir: str, args: argparse.Namespace, out: str) -> list[float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    scorers = [get_scorer(name) for name in OBJECTIVES]

    def reward_function(scorer):
        def reward(prompts, completions, **_):
            texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
            return scorer.reward(["" for _ in texts], texts).tolist()
        reward.__name__ = scorer.name
        return reward

    prompts = bundled_prompts(args.prompts * (args.steps + 2), seed=0)
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            times.append(time.perf_counter() - self.start)

    config = GRPOConfig(output_dir=out, per_device_train_batch_size=args.prompts * args.generations,
                        num_generations=args.generations, max_completion_length=args.tokens, max_steps=args.steps,
                        reward_weights=[1.0] * len(OBJECTIVES), beta=0.01, learning_rate=1e-4, logging_steps=1000,
                        save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), seed=0,
                        disable_tqdm=True, bf16=args.mixed_precision == "bf16")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
                          reward_funcs=[reward_function(s) for s in scorers], train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
                          callbacks=[Timer()])
    trainer.train()
    return times[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="samples per prompt")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per sample")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="a causal LM folder instead of the built Llama")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"], help="autocast on both sides")
    parser.add_argument("--engine", default="generate", choices=["generate", "decode"],
                        help="moalign's rollouts: transformers' generate (the default) or moalign's decoding loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(build_tiny_model(f"{tmp}/llama", hidden_size=args.hidden, num_layers=args.layers))
        print(f"model {model_dir}, {args.prompts} prompts x {args.generations} samples x {args.tokens} tokens, "
              f"K = {len(OBJECTIVES)}, {args.threads} threads, {args.steps} steps per run, mixed precision {args.mixed_precision}, "
              f"moalign rollouts by {args.engine}")
        print("| round | configuration | median step (s) | ratio to TRL | generation | rewards | rollout passes | update | pama solve |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in range(args.rounds):
            trl = statistics.median(time_trl(model_dir, args, f"{tmp}/trl"))
            print(f"| {r} | trl_grpo | {trl:.3f} | 1.00 | | | | | |", flush=True)
            for name, rule, advantage in (("pama_group", "pama", "group"), ("pama_gae", "pama", "gae"),
                                          ("morlhf_gae", "morlhf", "gae")):
                times, shares = time_moalign(model_dir, args, rule, advantage, f"{tmp}/{name}")
                step = statistics.median(times)
                cells = " | ".join(f"{100 * shares[k]:.2f} %" for k in ("generation", "rewards", "rollout passes",
                                                                          "update", "pama solve"))
                print(f"| {r} | {name} | {step:.3f} | {step / trl:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
