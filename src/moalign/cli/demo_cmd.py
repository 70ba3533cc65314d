"""``moalign demo``: the embedded default pipeline, end to end, offline.

Prepares the default model (or the tiny one with ``--tiny``), builds or loads the bundled task,
scores the model's own answers on every objective, trains one LoRA expert per objective (DPO on that
objective alone) and one MGDA-Decoupled model on all of them, and reports each one's held-out
preference accuracy per objective. Everything goes under one output folder. Later stages (HoE, the
Pareto front) extend this script; it stays a thin layer over the library.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moalign.storage import cache_dir, write_json_atomic

N_ANSWER_PROMPTS = 24


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the default pipeline end to end (about 15 min; --tiny: 1 min)")
    demo.add_argument("--tiny", action="store_true", help="use a tiny model and the synthetic task (fast)")
    demo.add_argument("--out", type=Path, help="output folder (default: ./moalign-out/demo[-tiny])")
    demo.add_argument("--n-prompts", type=int, help="bundled prompts in the task (default 160, tiny 64)")
    demo.add_argument("--train-steps", type=int, help="optimizer steps per trained model (default 20, tiny 40)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)


def _step(message: str) -> None:
    print(f"[moalign demo] {message}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from moalign.data import format_summary, save_preference_data, summarize
    from moalign.models import build_tiny_model, generate_responses, load_model, load_tokenizer, prepare_default_model
    from moalign.objectives import reward_statistics
    from moalign.tasks import BundledTaskConfig, build_synthetic_task, bundled_prompts, load_or_build_bundled_task

    start = time.time()
    out = args.out or Path("moalign-out") / ("demo-tiny" if args.tiny else "demo")
    out.mkdir(parents=True, exist_ok=True)
    config = BundledTaskConfig(n_prompts=args.n_prompts or (64 if args.tiny else 160), seed=args.seed)

    _step("preparing the model")
    if args.tiny:
        model_path = build_tiny_model(cache_dir() / "models" / "tiny-llama")
    else:
        model_path = prepare_default_model()
    _step(f"model: {model_path}")

    _step("building the bundled task (cached after the first run)")
    if args.tiny:
        task = build_synthetic_task(config)
    else:
        task, cached_at = load_or_build_bundled_task(model_path, config)
        _step(f"task cache: {cached_at}")
    save_preference_data(task, out / "task.jsonl")
    task_summary = summarize(task)
    print(format_summary(task_summary, title="bundled task"))

    _step(f"scoring the model's own answers to {N_ANSWER_PROMPTS} held-out prompts")
    held_out = bundled_prompts(seed=config.seed)[config.n_prompts:config.n_prompts + N_ANSWER_PROMPTS]
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    answers = generate_responses(model, tokenizer, held_out, max_new_tokens=64, batch_size=8, progress=True)
    answer_stats = reward_statistics(config.scorers(), held_out, answers)
    with open(out / "answers.jsonl", "w", encoding="utf-8") as fh:
        for prompt, answer in zip(held_out, answers):
            fh.write(json.dumps({"prompt": prompt, "response": answer}, ensure_ascii=False) + "\n")
    print(f"{'objective':<16}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}")
    for name, s in answer_stats.items():
        print(f"{name:<16}{s['mean']:>10.3f}{s['std']:>10.3f}{s['min']:>10.3f}{s['max']:>10.3f}")

    accuracy = train_and_compare(model_path, task, config, out, args)
    front = compare_fronts(model_path, config, held_out, out)

    report = {
        "model": str(model_path),
        "tiny": args.tiny,
        "task_config": {"objectives": list(config.objectives), "n_prompts": config.n_prompts, "seed": config.seed},
        "task_summary": task_summary,
        "answer_reward_statistics": answer_stats,
        "held_out_accuracy": accuracy,
        "front_hypervolume": {m: v["hypervolume"] for m, v in front["methods"].items()},
        "seconds": round(time.time() - start, 1),
    }
    write_json_atomic(out / "report.json", report)
    _step(f"done in {report['seconds']} s; everything is in {out.resolve()}")
    return 0


def compare_fronts(model_path: Path, config, prompts: list[str], out: Path) -> dict:
    """Sweep the preference grid with rewarded soups of the experts; MGDA-Decoupled and the base are one
    point each. Writes the front report (JSON, Markdown, plots) under ``out/front``."""
    import numpy as np
    from peft import PeftModel

    from moalign.eval import simplex_grid, sweep, write_front_report
    from moalign.models import LoraMixture, generate_responses, load_model, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    settings = {"model": str(model_path), "max_new_tokens": 48, "greedy": True, "out": str(out)}
    scorers = config.scorers()
    grid = simplex_grid(len(config.objectives), 2)
    uniform = np.full((1, len(config.objectives)), 1.0 / len(config.objectives))  # single-point methods
    models_dir = out / "models"

    def generator(model):
        return lambda preference, batch: generate_responses(model, tokenizer, batch, max_new_tokens=48, batch_size=8)

    mixture = LoraMixture(load_model(model_path), [models_dir / f"expert-{o}" / "final" for o in config.objectives],
                          names=list(config.objectives))

    def soup(preference, batch):
        mixture.set_weights(preference)
        return generate_responses(mixture.model, tokenizer, batch, max_new_tokens=48, batch_size=8)

    mgda = PeftModel.from_pretrained(load_model(model_path), str(models_dir / "mgda_decoupled" / "final")).eval()
    cache = out / "front" / "cache"
    _step(f"front: rewarded soups of the experts at {len(grid)} preferences, MGDA-Decoupled and the base")
    points = {
        "rewarded_soup(experts)": sweep("soup", soup, grid, prompts, scorers, cache, settings=settings),
        "mgda_decoupled": sweep("mgda", generator(mgda), uniform, prompts, scorers, cache, settings=settings),
        "base": sweep("base", generator(load_model(model_path)), uniform, prompts, scorers, cache, settings=settings),
    }
    report = write_front_report(points, list(config.objectives), out / "front", resamples=200, seed=config.seed)
    print((out / "front" / "report.md").read_text())
    return report


def train_and_compare(model_path: Path, task, config, out: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One LoRA expert per objective and one MGDA-Decoupled model; held-out accuracy of each, and of the base."""
    from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    train, held_out = task.split(0.1, seed=config.seed)
    steps = args.train_steps or (40 if args.tiny else 20)
    runs = {f"expert:{name}": ("linear", [1.0 if o == name else 0.0 for o in config.objectives]) for name in config.objectives}
    runs["mgda_decoupled"] = ("mgda_decoupled", None)
    accuracy: dict[str, dict[str, float]] = {}
    for i, (label, (rule, preference)) in enumerate(runs.items()):
        _step(f"training {label} ({steps} steps, LoRA)")
        run_config = MultiObjectiveDPOConfig(
            model=str(model_path), rule=rule, preference=preference, max_steps=steps,
            per_device_batch_size=4, learning_rate=1e-3 if args.tiny else 5e-4, beta=0.1, max_length=128,
            max_prompt_length=48, logging_steps=0, eval_before=i == 0, seed=config.seed,
            output_dir=str(out / "models" / label.replace(":", "-")),
        )
        summary = MultiObjectiveDPOTrainer(run_config, train_dataset=train, eval_dataset=held_out).train()
        if summary["eval_before"]:
            accuracy["base"] = {k: v["accuracy"] for k, v in summary["eval_before"].items()}
        accuracy[label] = {k: v["accuracy"] for k, v in summary["eval_after"].items()}
    print(f"held-out preference accuracy ({len(held_out)} pairs; the base scores 0 because its margins are all 0):")
    print(f"{'model':<28}" + "".join(f"{name:>14}" for name in config.objectives))
    for label, row in accuracy.items():
        print(f"{label:<28}" + "".join(f"{row[name]:>14.3f}" for name in config.objectives))
    return accuracy
