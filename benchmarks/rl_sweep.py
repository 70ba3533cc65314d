"""Sweep RL rules over learning rates and seeds: how far each rule moves every objective, and how far it moves
the policy, at the same number of steps.

    python benchmarks/rl_sweep.py --out runs/rl-sweep --variants pama pama:sequence pama:batch_mean morlhf mgda_ub \\
        --learning-rates 1e-3 3e-3 1e-2 --seeds 0 1 -- --model tiny --task bundled --rewards informative,readable \\
        --max_steps 40 --eval_steps 20 --top_k 50

A variant is a rule name, ``pama:GRANULARITY`` for one of PAMA's readings of where its minimum is taken. Everything
after ``--`` is passed to every run as ``moalign train rl`` overrides. Each run goes to
``OUT/<variant>/lr<LR>/seed<SEED>``; ``OUT/sweep.md`` holds the table: per variant and learning rate, the change of
each objective's held-out mean reward from the first to the last evaluation (mean over seeds, with the seeds'
range), how many seeds raised every objective (what a Pareto method aims for; the objectives' scales differ, so
no change is compared with another objective's), the KL to the reference and PAMA's share of tokens with weight 0,
both averaged over the last half of the steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rl_comparison import curves


def train_logs(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "eval" not in r]


def summarise(run_dir: Path) -> dict:
    """One run's changes per objective (last evaluation minus first) and its late-training diagnostics."""
    evals, logs = curves(run_dir), train_logs(run_dir)
    objectives = [k for k in evals[0]["eval"] if k != "response_tokens"]
    late = logs[len(logs) // 2:]
    change = {o: evals[-1]["eval"][o]["mean"] - evals[0]["eval"][o]["mean"] for o in objectives}
    zero = [r["pama/zero_fraction"] for r in late if "pama/zero_fraction" in r]
    return {"change": change, "all_rose": all(v > 0 for v in change.values()), "kl": float(np.mean([r["kl"] for r in late])),
            "zero_fraction": float(np.mean(zero)) if zero else None}


def cell(values: list[float]) -> str:
    return f"{np.mean(values):+.3f} [{min(values):+.3f}, {max(values):+.3f}]" if len(values) > 1 else f"{values[0]:+.3f}"


def report(out: Path, variants: list[str], learning_rates: list[str], seeds: list[str]) -> str:
    rows = {(v, lr): [summarise(out / v.replace(":", "-") / f"lr{lr}" / f"seed{s}") for s in seeds]
            for v in variants for lr in learning_rates}
    objectives = list(next(iter(rows.values()))[0]["change"])
    lines = ["| variant | lr | " + " | ".join(f"Δ {o}" for o in objectives) + " | every objective up | KL | tokens with s = 0 |",
             "|---|---|" + "---|" * (len(objectives) + 3)]
    for (variant, lr), runs in rows.items():
        zero = [r["zero_fraction"] for r in runs if r["zero_fraction"] is not None]
        lines.append(f"| {variant} | {lr} | " + " | ".join(cell([r["change"][o] for r in runs]) for o in objectives)
                     + f" | {sum(r['all_rose'] for r in runs)}/{len(runs)} | {np.mean([r['kl'] for r in runs]):.3f} | "
                     + (f"{np.mean(zero):.2f}" if zero else "–") + " |")
    table = "\n".join(lines) + "\n"
    (out / "sweep.md").write_text(table)
    (out / "sweep.json").write_text(json.dumps({f"{v}@{lr}": runs for (v, lr), runs in rows.items()}, indent=1))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["pama", "pama:sequence", "pama:batch_mean", "morlhf", "mgda_ub"])
    parser.add_argument("--learning-rates", nargs="+", default=["1e-3", "3e-3", "1e-2"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1"])
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table from OUT")
    parser.add_argument("overrides", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    overrides = [a for a in args.overrides if a != "--"]
    if not args.report_only:
        from moalign.config import load_config, parse_overrides
        from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer

        for variant in args.variants:
            rule, _, granularity = variant.partition(":")
            for lr in args.learning_rates:
                for seed in args.seeds:
                    run_dir = args.out / variant.replace(":", "-") / f"lr{lr}" / f"seed{seed}"
                    if (run_dir / "final").exists():  # finished earlier: a sweep that was stopped goes on
                        continue
                    values = {**parse_overrides(overrides), "rule": rule, "learning_rate": lr, "seed": seed,
                              "output_dir": str(run_dir), "overwrite_output_dir": "true",
                              **({"pama_granularity": granularity} if granularity else {})}
                    MultiObjectiveRLTrainer(load_config(MultiObjectiveRLConfig, None, values)).train()
    print(report(args.out, args.variants, args.learning_rates, args.seeds))


if __name__ == "__main__":
    main()
