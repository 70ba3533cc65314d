"""Win rate against golden (reference) responses, per objective and overall, with bootstrap intervals.

Each objective's judge is its scorer: a response wins on an objective when its reward beats the golden
response's by more than ``tie_margin``. The overall verdict on a prompt is the preference-weighted vote
of the per-objective verdicts, sign(sum_k w_k o_k), so it needs no common scale across objectives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.eval.stats import bootstrap_interval, count_outcomes, outcomes
from moalign.eval.sweep import FrontPoint

OVERALL = "overall"


def golden_win_rates(
    point: FrontPoint,
    reference_scores: np.ndarray,
    objectives: Sequence[str],
    *,
    tie_margin: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Wins, ties, losses, win rate and net win rate (each with a 95 % interval over prompts) for every
    objective and ``overall``, for one method's answers (``point.per_prompt``, N x K rewards) against the
    golden responses' rewards ``reference_scores`` (N x K)."""
    model = np.asarray(point.per_prompt, dtype=np.float64)
    reference = np.asarray(reference_scores, dtype=np.float64)
    if model.shape != reference.shape or model.shape[1] != len(objectives):
        raise ValueError(f"model rewards {model.shape} and golden rewards {reference.shape} must both be (N, {len(objectives)})")
    per_objective = np.stack([outcomes(model[:, k], reference[:, k], tie_margin) for k in range(len(objectives))], axis=1)
    weights = np.asarray(point.preference, dtype=np.float64)
    overall = np.sign(per_objective @ weights).astype(np.int8)
    columns = {name: per_objective[:, k] for k, name in enumerate(objectives)} | {OVERALL: overall}
    result = {}
    for name, column in columns.items():
        counts = count_outcomes(column)
        result[name] = {
            "wins": counts.wins, "ties": counts.ties, "losses": counts.losses,
            "win_rate": bootstrap_interval(column, lambda o: count_outcomes(o).win_rate,
                                           resamples=resamples, seed=seed).to_dict(),
            "net_win_rate": bootstrap_interval(column, lambda o: count_outcomes(o).net_win_rate,
                                               resamples=resamples, seed=seed).to_dict(),
        }
    return result


def write_winrate_report(
    results: dict[str, dict[str, dict[str, Any]]],
    objectives: Sequence[str],
    out_dir: str | Path,
    *,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``report.json`` (every number), ``report.md`` (net win rate table) and ``winrate.png`` (bars with
    intervals) for ``results[method][objective or "overall"]`` as returned by :func:`golden_win_rates`."""
    if not results:
        raise ValueError("no methods to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"objectives": list(objectives), **(details or {}), "methods": results}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    columns = [*objectives, OVERALL]
    lines = ["Net win rate against the golden responses (wins − losses over prompts; 95 % bootstrap interval).", "",
             "| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method, row in results.items():
        cells = [f"{row[c]['net_win_rate']['estimate']:+.3f} [{row[c]['net_win_rate']['low']:+.3f}, "
                 f"{row[c]['net_win_rate']['high']:+.3f}]" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "| method | " + " | ".join(f"{c} W/T/L" for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for method, row in results.items():
        lines.append(f"| {method} | " + " | ".join(f"{row[c]['wins']}/{row[c]['ties']}/{row[c]['losses']}" for c in columns) + " |")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    _plot(results, columns, out_dir / "winrate.png")
    return report


def _plot(results: dict[str, dict[str, dict[str, Any]]], columns: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(columns), 4))
    width = 0.8 / len(results)
    for m, (method, row) in enumerate(results.items()):
        est = np.array([row[c]["net_win_rate"]["estimate"] for c in columns])
        low = np.array([row[c]["net_win_rate"]["low"] for c in columns])
        high = np.array([row[c]["net_win_rate"]["high"] for c in columns])
        x = np.arange(len(columns)) + (m - (len(results) - 1) / 2) * width
        ax.bar(x, est, width, yerr=np.vstack([est - low, high - est]), capsize=3, label=method)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(columns)), columns)
    ax.set_ylabel("net win rate vs golden")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
