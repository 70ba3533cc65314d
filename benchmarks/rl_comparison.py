"""Compare RL rules at the same budget: held-out mean reward per objective with intervals, and training curves.

    python benchmarks/rl_comparison.py --out runs/rl-sentiment-length \\
        --rules pama morlhf mgda_ub -- --model smollm2 --prompt_files ../shared/data/hh-rlhf-helpful-base-test/test.jsonl.gz \\
        --prompt_adapter hh_rlhf --rewards sentiment,length_clip --max_steps 30

Everything after ``--`` is passed to every run as ``moalign train rl`` overrides (``morlhf`` gets a uniform
preference unless one is given). Each run goes to ``OUT/<rule>``; ``OUT/comparison.md`` holds the table
(mean reward on the held-out prompts before and after, 95 % bootstrap intervals over prompts) and
``OUT/curves.png`` the held-out mean reward per objective at every evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curves(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "eval" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rules", nargs="+", default=["pama", "morlhf", "mgda_ub"])
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table and plot from OUT")
    parser.add_argument("overrides", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    overrides = [a for a in args.overrides if a != "--"]
    if not args.report_only:
        from moalign.config import load_config, parse_overrides
        from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer

        for rule in args.rules:
            values = {**parse_overrides(overrides), "rule": rule, "output_dir": str(args.out / rule),
                      "overwrite_output_dir": "true"}
            MultiObjectiveRLTrainer(load_config(MultiObjectiveRLConfig, None, values)).train()
    report(args.out, args.rules)


def report(out: Path, rules: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {rule: curves(out / rule) for rule in rules}
    objectives = [k for k in runs[rules[0]][-1]["eval"] if k != "response_tokens"]
    lines = ["| rule | " + " | ".join(f"{o} before | {o} after [95 % CI]" for o in objectives) + " | tokens |",
             "|---|" + "---|---|" * len(objectives) + "---|"]
    for rule, evals in runs.items():
        first, last = evals[0]["eval"], evals[-1]["eval"]
        cells = [f"{first[o]['mean']:.3f} | {last[o]['mean']:.3f} [{last[o]['low']:.3f}, {last[o]['high']:.3f}]"
                 for o in objectives]
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {last['response_tokens']['mean']:.1f} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, len(objectives), figsize=(5 * len(objectives), 3.5))
    for ax, objective in zip(axes if len(objectives) > 1 else [axes], objectives):
        for rule, evals in runs.items():
            steps = [r["step"] for r in evals]
            ax.plot(steps, [r["eval"][objective]["mean"] for r in evals], marker="o", label=rule)
            ax.fill_between(steps, [r["eval"][objective]["low"] for r in evals],
                            [r["eval"][objective]["high"] for r in evals], alpha=0.15)
        ax.set_xlabel("RL step")
        ax.set_ylabel(f"held-out mean {objective}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(f"wrote {out / 'comparison.md'} and {out / 'curves.png'}")


if __name__ == "__main__":
    main()
