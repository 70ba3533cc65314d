"""Building a HoE model from per-objective experts: LoRA adapters as they are, full fine-tuned models by task-SVD,
and anchor experts for intermediate preferences merged from them (what ``moalign hoe build`` runs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from moalign.hoe.config import HoEError
from moalign.hoe.experts import Expert, expert_from_adapter, expert_from_finetuned, merged_expert
from moalign.hoe.model import HoEModel

#: Task-SVD rank for experts taken from full fine-tuned models when neither a rank nor an energy is given (HoE's).
DEFAULT_SVD_RANK = 256


def default_anchors(num_objectives: int) -> list[list[float]]:
    """The simplex centre (HoE's example anchor, [0.5, 0.5] for two objectives); none for one objective."""
    return [[1.0 / num_objectives] * num_objectives] if num_objectives > 1 else []


def build_hoe(
    experts: Sequence[tuple[str, str | Path]],
    base_model: str,
    *,
    anchors: Sequence[Sequence[float]] | None = None,
    merge: str = "ties",
    density: float = 0.2,
    rank: int | None = None,
    energy: float | None = None,
    n_nearest: int | None = None,
    dtype: str = "auto",
) -> tuple[HoEModel, dict[str, Any]]:
    """A HoE model over ``experts`` (``(objective, folder)`` pairs: a PEFT adapter, or a full model compressed by
    task-SVD) with anchor experts at ``anchors`` (default: the simplex centre), and a report of what was built
    (ranks, per-module reconstruction errors, dropped parameters)."""
    from moalign.models import load_model, load_tokenizer

    objectives = [name for name, _ in experts]
    if len(set(objectives)) != len(objectives):
        raise HoEError(f"one expert per objective, got {objectives}")
    k = len(objectives)
    base = load_model(base_model, dtype=dtype)
    singles: list[Expert] = []
    report: dict[str, Any] = {"experts": {}, "anchors": {}}
    for index, (objective, folder) in enumerate(tqdm(experts, desc="experts", leave=False)):
        folder = Path(folder)
        one_hot = np.eye(k)[index].tolist()
        if (folder / "adapter_config.json").exists():
            expert, dropped, source = expert_from_adapter(objective, one_hot, folder), [], "adapter"
        elif (folder / "config.json").exists():
            svd_rank = rank if rank is not None or energy is not None else DEFAULT_SVD_RANK
            expert, dropped = expert_from_finetuned(objective, one_hot, base, load_model(folder, dtype=dtype),
                                                    rank=svd_rank, energy=energy)
            source = "task-svd"
        else:
            raise HoEError(f"expert {objective!r}: {folder} is neither a PEFT adapter nor a model folder")
        singles.append(expert)
        report["experts"][objective] = {"source": source, "path": str(folder), **_summary(expert),
                                        "dropped_parameters": dropped}
    anchor_experts = []
    for point in (default_anchors(k) if anchors is None else anchors):
        weights = np.asarray(point, dtype=np.float64)
        if weights.shape != (k,) or np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise HoEError(f"anchor {list(point)}: needs {k} non-negative weights, not all zero")
        weights = weights / weights.sum()
        if np.isclose(weights.max(), 1.0):
            continue  # a vertex is the single-objective expert itself
        name = "anchor_" + "_".join(f"{w:.2f}" for w in weights)
        anchor = merged_expert(name, weights.tolist(), singles, method=merge, density=density, rank=rank, energy=energy)
        anchor_experts.append(anchor)
        report["anchors"][name] = {"preference": weights.tolist(), "merge": merge, **_summary(anchor)}
    model = HoEModel.from_experts(base, singles + anchor_experts, objectives, base_model=base_model,
                                  tokenizer=load_tokenizer(base_model), n_nearest=n_nearest)
    return model, report


def _summary(expert: Expert) -> dict[str, Any]:
    ranks = list(expert.ranks().values())
    errors = list(expert.errors.values())
    return {"modules": len(ranks), "rank_min": min(ranks, default=0), "rank_max": max(ranks, default=0),
            "parameters": int(sum(a.numel() + b.numel() for a, b in expert.factors.values())),
            "relative_error_mean": float(np.mean(errors)) if errors else 0.0,
            "relative_error_max": float(np.max(errors)) if errors else 0.0,
            "relative_error_per_module": expert.errors}
