"""The front comparison report: a JSON of every number, a Markdown table, and PNG plots."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.eval.pareto import hypervolume, non_dominated, spread, weighted_utility
from moalign.eval.stats import Interval, bootstrap_interval
from moalign.eval.sweep import FrontPoint


def default_reference(points: dict[str, list[FrontPoint]], margin: float = 0.05) -> np.ndarray:
    """Below every score: the per-objective minimum over all methods minus ``margin`` of the range."""
    allp = np.vstack([p.scores for pts in points.values() for p in pts])
    span = np.maximum(allp.max(0) - allp.min(0), 1e-9)
    return allp.min(0) - margin * span


def _per_prompt_stack(front: list[FrontPoint]) -> np.ndarray:
    """A method's per-prompt rewards as one ``(N prompts, M points, K)`` array, so a bootstrap resamples the
    same prompts for every preference."""
    return np.stack([p.per_prompt for p in front], axis=1)


def hypervolume_interval(front: list[FrontPoint], reference: np.ndarray, *, resamples: int = 200, seed: int = 0) -> Interval:
    """Hypervolume of a method's points with a bootstrap interval over prompts (the same prompts resampled
    for every preference). Resamples whose points fall below the reference are clipped to it."""
    stacked = _per_prompt_stack(front)
    hypervolume(stacked.mean(axis=0), reference)  # the real front must dominate the reference: raises if not

    def statistic(rows: np.ndarray) -> float:
        means = np.maximum(rows.mean(axis=0), reference + 1e-12)
        return hypervolume(means, reference)

    return bootstrap_interval(stacked, statistic, resamples=resamples, seed=seed)


def spread_intervals(front: list[FrontPoint], *, resamples: int = 200, seed: int = 0) -> list[Interval]:
    """Per objective, the range covered by the method's non-dominated points, with a bootstrap interval over
    prompts (the same prompts resampled for every preference)."""
    stacked = _per_prompt_stack(front)
    return [bootstrap_interval(stacked, lambda rows, k=k: float(spread(rows.mean(axis=0))[k]), resamples=resamples, seed=seed)
            for k in range(stacked.shape[2])]


def preference_utility(
    points: dict[str, list[FrontPoint]], reference: np.ndarray, *, resamples: int = 200, seed: int = 0
) -> dict[str, Interval]:
    """How well each method serves the preferences it is asked for, with a bootstrap interval over prompts.

    Scores are normalised per objective to ``(s - reference) / (best - reference)`` (best = the highest mean
    score of any method), so every objective counts on the same scale. The grid is every preference any
    method was swept at; at each, a method answers with its point for that preference, or (a single model,
    or a grid that lacks it) with its point nearest to it. The figure is the mean over the grid of
    ``sum_k w_k * normalised score_k``.
    """
    best = np.vstack([p.scores for pts in points.values() for p in pts]).max(axis=0)
    scale = np.maximum(best - reference, 1e-12)
    grid = np.unique(np.round(np.vstack([p.preference for pts in points.values() for p in pts]), 9), axis=0)
    out = {}
    for method, front in points.items():
        prefs = np.array([p.preference for p in front])
        nearest = [int(np.argmin(np.abs(prefs - w).sum(axis=1))) for w in grid]
        stacked = np.stack([(front[i].per_prompt - reference) / scale for i in nearest], axis=1)  # (N, G, K)

        def statistic(rows: np.ndarray) -> float:
            return float(weighted_utility(rows.mean(axis=0), grid).mean())

        out[method] = bootstrap_interval(stacked, statistic, resamples=resamples, seed=seed)
    return out


def write_front_report(
    points: dict[str, list[FrontPoint]],
    objectives: Sequence[str],
    out_dir: str | Path,
    *,
    reference: np.ndarray | None = None,
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and ``front.png`` (or pairwise plots for K > 2) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not points:
        raise ValueError("no methods to report")
    ref = default_reference(points) if reference is None else np.asarray(reference, dtype=np.float64)
    report: dict[str, Any] = {"objectives": list(objectives), "reference_point": ref.tolist(), "methods": {}}
    every = np.vstack([p.scores for front in points.values() for p in front])
    flat = [objectives[k] for k in np.flatnonzero(every.max(axis=0) - every.min(axis=0) <= 0)]
    if reference is None and flat:
        # no method differs from any other on these objectives: the reference sits an infinitesimal margin below,
        # so every volume is 0 and a bootstrap would only measure noise against that margin
        report["degenerate"] = f"every method scores the same on {flat}; hypervolume is 0 for all"
    utility = preference_utility(points, ref, resamples=resamples, seed=seed)
    for method, front in points.items():
        scores = np.vstack([p.scores for p in front])
        if "degenerate" in report:
            hv = Interval(0.0, 0.0, 0.0, 0.95)
        else:
            hv = hypervolume_interval(front, ref, resamples=resamples, seed=seed)
        report["methods"][method] = {
            "points": [{"preference": p.preference, "scores": p.scores.tolist(),
                        "scores_ci": [bootstrap_interval(p.per_prompt[:, k], resamples=resamples, seed=seed).to_dict()
                                      for k in range(len(objectives))]} for p in front],
            "non_dominated": np.flatnonzero(non_dominated(scores)).tolist(),
            "hypervolume": hv.to_dict(),
            "preference_utility": utility[method].to_dict(),
            "spread": [spread_k.to_dict() for spread_k in spread_intervals(front, resamples=resamples, seed=seed)],
            "best_per_objective": scores.max(axis=0).tolist(),
        }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"Reference point: {', '.join(f'{o} {v:.4g}' for o, v in zip(objectives, ref))}", "",
             *([f"Degenerate front: {report['degenerate']}.", ""] if "degenerate" in report else []),
             "| method | points | hypervolume (95% CI over prompts) | preference utility (95% CI) | "
             + " | ".join(f"best {o}" for o in objectives) + " |",
             "|---|---|---|---|" + "---|" * len(objectives)]
    for method, entry in report["methods"].items():
        hv, u = entry["hypervolume"], entry["preference_utility"]
        best = " | ".join(f"{v:.4g}" for v in entry["best_per_objective"])
        lines.append(f"| {method} | {len(entry['points'])} | {hv['estimate']:.4g} [{hv['low']:.4g}, {hv['high']:.4g}] | "
                     f"{u['estimate']:.3f} [{u['low']:.3f}, {u['high']:.3f}] | {best} |")
    lines += ["", "Preference utility: the mean over every swept preference w of sum_k w_k s_k, with each score s_k "
              "rescaled to 0 at the reference point and 1 at the best mean score of any method; a method without a "
              "point at w answers with its nearest one."]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    plot_fronts(points, objectives, out_dir)
    return report


def plot_fronts(points: dict[str, list[FrontPoint]], objectives: Sequence[str], out_dir: Path) -> list[Path]:
    """One scatter per pair of objectives, each method's points joined in preference order and labelled
    with the preference's first weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    pairs = list(itertools.combinations(range(len(objectives)), 2)) or [(0, 0)]
    for i, j in pairs:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for method, front in points.items():
            xy = np.array([[p.scores[i], p.scores[j]] for p in front])
            ax.plot(xy[:, 0], xy[:, 1], marker="o", label=method)
            if len(front) > 1:
                for p, (x, y) in zip(front, xy):
                    ax.annotate(f"{p.preference[0]:.2g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlabel(objectives[i])
        ax.set_ylabel(objectives[j])
        ax.set_title("Pareto fronts (labels: weight on " + objectives[0] + ")")
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = "front.png" if len(pairs) == 1 else f"front_{objectives[i]}_{objectives[j]}.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        written.append(out_dir / name)
    return written
