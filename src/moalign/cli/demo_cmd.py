"""``moalign demo``: the embedded default pipeline, end to end, offline.

Prepares the default model (or the tiny one with ``--tiny``), builds or loads the bundled task,
scores the model's own answers on every objective, trains linear scalarisation at every preference of a
small grid (the simplex's corners, i.e. the per-objective LoRA experts, and its centre) and one
MGDA-Decoupled model, reports each one's held-out preference accuracy per objective, builds a HoE model from
the experts (a TIES-merged centre anchor; no routers, to stay within the time), and compares the Pareto fronts
of all of them, rewarded soups of the experts and the base on held-out prompts. Everything goes under one
output folder; the script stays a thin layer over the library.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moalign.storage import cache_dir, write_json_atomic

N_ANSWER_PROMPTS = 24
FRONT_TOKENS = 40
HELD_OUT_FRACTION = 0.125


def demo_grid(num_objectives: int) -> np.ndarray:
    """The demo's preference grid: the K corners (the per-objective experts) and the centre of the simplex."""
    return np.vstack([np.eye(num_objectives), np.full((1, num_objectives), 1.0 / num_objectives)])


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the default pipeline end to end (about 15 min; --tiny: 1 min)")
    demo.add_argument("--tiny", action="store_true", help="use a tiny model and the synthetic task (fast)")
    demo.add_argument("--out", type=Path, help="output folder (default: ./moalign-out/demo[-tiny])")
    demo.add_argument("--n-prompts", type=int, help="bundled prompts in the task (default 128, tiny 64)")
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
    config = BundledTaskConfig(n_prompts=args.n_prompts or (64 if args.tiny else 128), seed=args.seed)

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
    answers = generate_responses(model, tokenizer, held_out, max_new_tokens=64, batch_size=N_ANSWER_PROMPTS, progress=True)
    answer_stats = reward_statistics(config.scorers(), held_out, answers)
    with open(out / "answers.jsonl", "w", encoding="utf-8") as fh:
        for prompt, answer in zip(held_out, answers):
            fh.write(json.dumps({"prompt": prompt, "response": answer}, ensure_ascii=False) + "\n")
    print(f"{'objective':<16}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}")
    for name, s in answer_stats.items():
        print(f"{name:<16}{s['mean']:>10.3f}{s['std']:>10.3f}{s['min']:>10.3f}{s['max']:>10.3f}")

    accuracy, runs = train_and_compare(model_path, task, config, out, args)
    front = compare_fronts(model_path, config, held_out, out, runs)

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


def compare_fronts(model_path: Path, config, prompts: list[str], out: Path, runs: dict[str, Path]) -> dict:
    """The demo's front comparison on held-out prompts: linear scalarisation over the preference grid (the
    experts are its vertices), rewarded soups of the experts and HoE built from them over the same grid,
    MGDA-Decoupled and the base (one point each). Writes the report (JSON, Markdown, plots) under ``out/front``."""
    from moalign.eval import GenerationSettings, build_method, sweep_methods, write_front_report
    from moalign.hoe.build import build_hoe

    objectives = list(config.objectives)
    _step("building HoE from the experts (TIES-merged centre anchor)")
    hoe, build_report = build_hoe([(o, runs[f"expert:{o}"]) for o in objectives], str(model_path))
    hoe.save_pretrained(out / "hoe")
    write_json_atomic(out / "hoe" / "build_report.json", build_report)
    experts = "+".join(str(runs[f"expert:{o}"]) for o in objectives)
    linear = "+".join(str(path) for label, path in runs.items() if label.startswith(("expert:", "linear:")))
    specs = {"linear_scalarisation": f"models:{linear}", "rewarded_soup": f"soup:{experts}",
             "hoe": f"hoe:{out / 'hoe'}", "mgda_decoupled": str(runs["mgda_decoupled"]), "base": "base"}
    grid = demo_grid(len(objectives))
    settings = GenerationSettings(max_new_tokens=FRONT_TOKENS, batch_size=len(prompts), seed=config.seed)
    methods = [build_method(name, kind, objectives, grid, base_model=str(model_path), settings=settings)
               for name, kind in specs.items()]
    _step(f"front: {', '.join(specs)} on {len(prompts)} held-out prompts ({len(grid)} grid preferences)")
    cache = out / "front" / "cache"
    points = sweep_methods(methods, prompts, config.scorers(), cache, settings)
    report = write_front_report(points, objectives, out / "front", resamples=200, seed=config.seed)
    print((out / "front" / "report.md").read_text())
    _step(f"front report: {(out / 'front' / 'report.md').resolve()}")
    return report


def train_and_compare(
    model_path: Path, task, config, out: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    """Linear scalarisation at every preference of the demo grid (its vertices are the per-objective experts)
    and one MGDA-Decoupled model, all LoRA with the same steps; held-out accuracy of each and of the base,
    and where each trained model was saved."""
    from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    train, held_out = task.split(HELD_OUT_FRACTION, seed=config.seed)
    steps = args.train_steps or (40 if args.tiny else 20)
    runs: dict[str, tuple[str, list[float] | None]] = {}
    for preference in demo_grid(len(config.objectives)).tolist():
        if max(preference) == 1.0:
            runs[f"expert:{config.objectives[preference.index(1.0)]}"] = ("linear", preference)
        else:
            runs["linear:uniform"] = ("linear", preference)
    runs["mgda_decoupled"] = ("mgda_decoupled", None)
    accuracy: dict[str, dict[str, float]] = {}
    saved: dict[str, Path] = {}
    for i, (label, (rule, preference)) in enumerate(runs.items()):
        _step(f"training {label} ({steps} steps, LoRA) [{i + 1}/{len(runs)}]")
        run_config = MultiObjectiveDPOConfig(
            model=str(model_path), rule=rule, preference=preference, max_steps=steps,
            per_device_batch_size=4, learning_rate=1e-3 if args.tiny else 5e-4, beta=0.1, max_length=128,
            max_prompt_length=48, logging_steps=0, eval_before=i == 0, seed=config.seed,
            output_dir=str(out / "models" / label.replace(":", "-")), overwrite_output_dir=True,
        )
        trainer = MultiObjectiveDPOTrainer(run_config, train_dataset=train, eval_dataset=held_out)
        summary = trainer.train()
        saved[label] = Path(run_config.output_dir) / "final"
        if summary["eval_before"]:
            accuracy["base"] = {k: v["accuracy"] for k, v in summary["eval_before"].items()}
        accuracy[label] = {k: v["accuracy"] for k, v in summary["eval_after"].items()}
    print(f"held-out preference accuracy ({len(held_out)} pairs; the base scores 0 because its margins are all 0):")
    print(f"{'model':<28}" + "".join(f"{name:>14}" for name in config.objectives))
    for label, row in accuracy.items():
        print(f"{label:<28}" + "".join(f"{row[name]:>14.3f}" for name in config.objectives))
    return accuracy, saved
