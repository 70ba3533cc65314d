"""One multi-objective RL step split into its parts, and side by side with TRL's GRPOTrainer, one process.

    .venv/bin/pip install trl==1.16.0   # the anchor; not a moalign dependency
    python benchmarks/bench_rl.py [--steps 8] [--rounds 2] [--prompts 4 --generations 4 --tokens 32] [--threads 2]
                                  [--mixed-precision no|bf16] [--engine generate|decode] [--warmup-rounds N]
                                  [--engine decode --decoding dynamic|static|cuda_graph]
    python benchmarks/bench_rl.py --count-ops [...]   # aten ops and host reads per step instead of times

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

``--engine decode`` samples moalign's rollouts with its own decoding loop (``rollout_engine: decode``) instead of
``generate``, its steps run as ``--decoding`` says (``cuda_graph``: replayed as a CUDA graph, GPU only). Each round
runs every configuration once, round r starting from the r-th configuration, so no configuration always pays for
running first; ``--warmup-rounds`` runs untimed rounds before the reported ones (on a GPU the first runs of a
process read slower). The table shows median step times (first 2 steps of a run dropped), their ratio to TRL's in
the same round, and for moalign the share of the step spent in generation, rewards, the rollout's log-prob/value
passes, the update, and PAMA's closed-form solve.

``--count-ops`` times nothing: it counts the aten operators each configuration dispatches in its third step, those
of generation among them, and the host reads of tensor values (``item``/``tolist``/copies to the CPU). On a GPU
where a small model's step is bound by kernel launches rather than arithmetic, these counts are what a step costs,
and they can be read on any machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter, defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from moalign.models import build_tiny_model  # noqa: E402
from moalign.objectives import get_scorer  # noqa: E402
from moalign.tasks import bundled_prompts  # noqa: E402
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer  # noqa: E402
from moalign.models.static_decoding import DECODING_MODES  # noqa: E402
from op_counter import OpCounter  # noqa: E402

OBJECTIVES = ("concise", "readable", "warm")
CONFIGURATIONS = [("trl_grpo", None, None), ("pama_group", "pama", "group"), ("pama_gae", "pama", "gae"),
                  ("morlhf_gae", "morlhf", "gae")]
PHASES = ("generation", "rewards", "rollout passes", "update", "pama solve")


def timed(phases: dict[str, float], name: str, fn):
    """``fn`` wrapped so that its wall time adds to ``phases[name]``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] += time.perf_counter() - start
    return wrapper


def counted(counts: Counter, prefix: str, fn):
    """``fn`` wrapped so that the operators it dispatches add to ``counts[prefix + " ops"]`` (host reads to
    ``counts[prefix + " reads"]``)."""
    def wrapper(*args, **kwargs):
        with OpCounter() as counter:
            out = fn(*args, **kwargs)
        counts[f"{prefix} ops"] += counter.ops
        counts[f"{prefix} reads"] += counter.reads
        return out
    return wrapper


def moalign_trainer(model_dir: str, args: argparse.Namespace, rule: str, advantage: str, out: str):
    kl = {"kl_penalty": "loss", "kl_estimator": "k3"} if advantage == "group" else {}  # GRPO's KL, as TRL
    config = MultiObjectiveRLConfig(
        **kl, model=model_dir, task="bundled", rewards=list(OBJECTIVES), rule=rule, advantage=advantage,
        num_generations=args.generations, per_device_batch_size=args.prompts, max_new_tokens=args.tokens,
        max_steps=args.steps, eval_prompts=0, eval_before=False, logging_steps=0, kl_coef=0.01, learning_rate=1e-4,
        output_dir=out, overwrite_output_dir=True, lora_r=8, lora_alpha=16, mixed_precision=args.mixed_precision,
        seed=0, max_prompts=args.prompts * (args.steps + 2),  # TRL's prompts: bundled_prompts(n, seed=0)
        rollout_engine=args.engine, rollout_decoding=args.decoding)
    return MultiObjectiveRLTrainer(config)


def count_moalign(model_dir: str, args: argparse.Namespace, rule: str, advantage: str, out: str) -> Counter:
    trainer = moalign_trainer(model_dir, args, rule, advantage, out)
    counts: Counter = Counter()
    for step in range(2):
        trainer.training_step(step)
    trainer.engine.generate = counted(counts, "generation", trainer.engine.generate)
    counted(counts, "step", trainer.training_step)(2)
    return counts


def time_moalign(model_dir: str, args: argparse.Namespace, rule: str, advantage: str, out: str) -> tuple[list[float], dict]:
    trainer = moalign_trainer(model_dir, args, rule, advantage, out)
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


def time_trl(model_dir: str, args: argparse.Namespace, out: str, counts: Counter | None = None) -> list[float]:
    """TRL's step times (first 2 dropped); with ``counts``, instead the operator counts of its third step."""
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

    class Counting(TrainerCallback):
        """Counts the operators of the third step, and of the generation within it."""

        counter = None

        def on_train_begin(self, _args, _state, _control, model=None, **__):
            generate = model.generate

            def generate_counted(*a, **k):
                if self.counter is None:
                    return generate(*a, **k)
                return counted(counts, "generation", generate)(*a, **k)
            model.generate = generate_counted

        def on_step_begin(self, _args, state, *_, **__):
            if state.global_step == 2:
                self.counter = OpCounter().__enter__()

        def on_step_end(self, *_, **__):
            if self.counter is not None:
                self.counter.__exit__(None, None, None)
                counts["step ops"], counts["step reads"] = self.counter.ops, self.counter.reads
                self.counter = None

    config = GRPOConfig(output_dir=out, per_device_train_batch_size=args.prompts * args.generations,
                        num_generations=args.generations, max_completion_length=args.tokens, max_steps=args.steps,
                        reward_weights=[1.0] * len(OBJECTIVES), beta=0.01, learning_rate=1e-4, logging_steps=1000,
                        save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), seed=0,
                        disable_tqdm=True, bf16=args.mixed_precision == "bf16")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
                          reward_funcs=[reward_function(s) for s in scorers], train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
                          callbacks=[Timer() if counts is None else Counting()])
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
    parser.add_argument("--decoding", default="dynamic", choices=DECODING_MODES,
                        help="how --engine decode runs its steps (static cache; CUDA graphs on a GPU)")
    parser.add_argument("--warmup-rounds", type=int, default=0, help="untimed rounds run before the reported ones")
    parser.add_argument("--count-ops", action="store_true",
                        help="count the operators and host reads of one step per configuration instead of timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(build_tiny_model(f"{tmp}/llama", hidden_size=args.hidden, num_layers=args.layers))
        print(f"model {model_dir}, {args.prompts} prompts x {args.generations} samples x {args.tokens} tokens, "
              f"K = {len(OBJECTIVES)}, {args.threads} threads, {args.steps} steps per run, mixed precision {args.mixed_precision}, "
              f"moalign rollouts by {args.engine}" + (f" ({args.decoding})" if args.engine == "decode" else ""))
        if args.count_ops:
            with torch.autograd.set_multithreading_enabled(False):  # backward on this thread, where the counter is
                print_counts(model_dir, args, tmp)
        else:
            print_times(model_dir, args, tmp)


def print_counts(model_dir: str, args: argparse.Namespace, tmp: str) -> None:
    print("| configuration | aten ops per step | of which generation | host reads per step | of which generation |")
    print("|---|---|---|---|---|")
    for name, rule, advantage in CONFIGURATIONS:
        if name == "trl_grpo":
            counts: Counter = Counter()
            time_trl(model_dir, args, f"{tmp}/trl", counts)
        else:
            counts = count_moalign(model_dir, args, rule, advantage, f"{tmp}/{name}")
        print(f"| {name} | {counts['step ops']} | {counts['generation ops']} | {counts['step reads']} | "
              f"{counts['generation reads']} |", flush=True)


def print_times(model_dir: str, args: argparse.Namespace, tmp: str) -> None:
    print("| round | configuration | median step (s) | ratio to TRL | generation | rewards | rollout passes | update | pama solve |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in range(-args.warmup_rounds, args.rounds):
        start = r % len(CONFIGURATIONS)
        rows = {}
        for name, rule, advantage in CONFIGURATIONS[start:] + CONFIGURATIONS[:start]:
            if name == "trl_grpo":
                rows[name] = statistics.median(time_trl(model_dir, args, f"{tmp}/trl")), None
            else:
                times, shares = time_moalign(model_dir, args, rule, advantage, f"{tmp}/{name}")
                rows[name] = statistics.median(times), shares
        if r < 0:
            continue
        trl = rows["trl_grpo"][0]
        for name, _, _ in CONFIGURATIONS:
            step, shares = rows[name]
            cells = " | ".join(f"{100 * shares[k]:.2f} %" for k in PHASES) if shares else " | ".join("" for _ in PHASES)
            print(f"| {r} | {name} | {step:.3f} | {step / trl:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
