"""Summaries of a preference dataset: label counts and balance per objective, disagreement, lengths."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from moalign.data.schema import PreferenceDataset


def _prompt_text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def disagreement_rate(dataset: PreferenceDataset, first: str, second: str) -> tuple[float, int]:
    """Among pairs where both objectives have a strict (non-tie) preference, the fraction where they differ.

    Returns ``(rate, n_compared)``; the rate is NaN when no pair is comparable.
    """
    labels, present = dataset.label_matrix()
    i, j = dataset.objectives.index(first), dataset.objectives.index(second)
    both = present[:, i] & present[:, j] & (labels[:, i] != 0) & (labels[:, j] != 0)
    n = int(both.sum())
    return (float((labels[both, i] != labels[both, j]).mean()) if n else float("nan")), n


def summarize(dataset: PreferenceDataset) -> dict[str, Any]:
    """Counts per objective (A / B / tie / absent), pairwise disagreement, and character lengths."""
    labels, present = dataset.label_matrix()
    per_objective = {}
    for k, name in enumerate(dataset.objectives):
        col, has = labels[:, k], present[:, k]
        per_objective[name] = {
            "labelled": int(has.sum()),
            "a": int(((col == 1) & has).sum()),
            "b": int(((col == -1) & has).sum()),
            "tie": int(((col == 0) & has).sum()),
            "absent": int((~has).sum()),
        }
    disagreement = {}
    for first, second in itertools.combinations(dataset.objectives, 2):
        rate, n = disagreement_rate(dataset, first, second)
        disagreement[f"{first} vs {second}"] = {"rate": rate, "compared": n}
    prompt_len = np.array([len(_prompt_text(p.prompt)) for p in dataset], dtype=float)
    response_len = np.array([len(r) for p in dataset for r in (p.response_a, p.response_b)], dtype=float)
    return {
        "pairs": len(dataset),
        "dropped": dataset.dropped,
        "objectives": per_objective,
        "disagreement": disagreement,
        "prompt_chars": {"mean": float(prompt_len.mean()), "median": float(np.median(prompt_len))},
        "response_chars": {"mean": float(response_len.mean()), "median": float(np.median(response_len))},
    }


def format_summary(summary: dict[str, Any], title: str = "") -> str:
    """A plain-text table of :func:`summarize`'s result, for the terminal."""
    lines = [title] if title else []
    lines.append(f"pairs: {summary['pairs']}" + (f"  (dropped invalid: {summary['dropped']})" if summary["dropped"] else ""))
    lines.append(f"{'objective':<24}{'labelled':>9}{'A':>7}{'B':>7}{'tie':>7}{'absent':>8}{'A share':>9}")
    for name, c in summary["objectives"].items():
        strict = c["a"] + c["b"]
        share = f"{c['a'] / strict:.2f}" if strict else "-"
        lines.append(f"{name:<24}{c['labelled']:>9}{c['a']:>7}{c['b']:>7}{c['tie']:>7}{c['absent']:>8}{share:>9}")
    if summary["disagreement"]:
        lines.append("disagreement (strict labels on both):")
        for key, d in summary["disagreement"].items():
            rate = "n/a (never both labelled)" if d["compared"] == 0 else f"{d['rate']:.1%} of {d['compared']}"
            lines.append(f"  {key}: {rate}")
    lines.append(
        f"prompt chars: mean {summary['prompt_chars']['mean']:.0f}, median {summary['prompt_chars']['median']:.0f}; "
        f"response chars: mean {summary['response_chars']['mean']:.0f}, median {summary['response_chars']['median']:.0f}"
    )
    return "\n".join(lines)
