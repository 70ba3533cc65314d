"""LoRA experts: per-module low-rank factors ``ΔW ≈ B A`` from a PEFT adapter, from a fine-tuned model by
task-SVD, or from a merge of several experts' task vectors for an anchor preference.

An :class:`Expert` stores, for every adapted linear module (named as in the base model), ``A`` of shape
``(r, d_in)`` and ``B`` of shape ``(d_out, r)`` with the LoRA scaling already folded into ``B``, so its update is
exactly ``B A`` whatever adapter it came from.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from moalign.errors import MoalignError
from moalign.hoe.merge import merge_task_vectors


class ExpertError(MoalignError, ValueError):
    """An expert that cannot be built or does not fit the base model."""


@dataclass
class Expert:
    """One LoRA expert: factors per module, the preference it serves, and how well it was compressed.

    Attributes:
        name: a label (an objective's name for single-objective experts).
        preference: the point of the preference simplex it is optimal for (one-hot for one objective).
        factors: module name → ``(A (r, d_in), B (d_out, r))``, scaling folded into ``B``.
        errors: module name → relative Frobenius error ``‖ΔW − BA‖ / ‖ΔW‖`` of the compression (task-SVD only).
    """

    name: str
    preference: list[float]
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    errors: dict[str, float] = field(default_factory=dict)

    def delta(self, module: str) -> torch.Tensor:
        """The dense update ``B A`` of one module."""
        a, b = self.factors[module]
        return b.float() @ a.float()

    def ranks(self) -> dict[str, int]:
        return {m: a.shape[0] for m, (a, _) in self.factors.items()}


def task_svd(delta: torch.Tensor, *, rank: int | None = None, energy: float | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Truncated SVD of one task vector ``ΔW (d_out, d_in)`` as a LoRA pair ``(A, B)``, with its relative error.

    ``B = U_r Σ_r^½`` and ``A = Σ_r^½ V_rᵀ``. The rank is ``rank`` (capped at the matrix rank), or the smallest
    that keeps ``energy`` of ``‖ΔW‖²``; with neither, the full rank (exact).
    """
    if rank is not None and energy is not None:
        raise ValueError("give rank or energy, not both")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    total = float((s**2).sum())
    if total == 0.0:
        return delta.new_zeros((0, delta.shape[1])), delta.new_zeros((delta.shape[0], 0)), 0.0
    if rank is not None:
        r = min(rank, s.numel())
    elif energy is not None:
        kept = torch.cumsum(s**2, 0) / total
        r = int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12).item()) + 1
    else:
        r = s.numel()
    root = s[:r].sqrt()
    b = (u[:, :r] * root).to(delta.dtype)
    a = (root[:, None] * vh[:r]).to(delta.dtype)
    error = math.sqrt(max(float((s[r:] ** 2).sum()), 0.0) / total)
    return a.contiguous(), b.contiguous(), error


def compress(name: str, preference: Sequence[float], deltas: dict[str, torch.Tensor], *, rank: int | None = None,
             energy: float | None = None) -> Expert:
    """An expert from dense per-module task vectors by task-SVD (modules whose update is zero are dropped)."""
    factors, errors = {}, {}
    for module, delta in deltas.items():
        a, b, error = task_svd(delta, rank=rank, energy=energy)
        if a.shape[0]:
            factors[module], errors[module] = (a, b), error
    return Expert(name, [float(p) for p in preference], factors, errors)


def linear_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The linear layers an expert can adapt: ``nn.Linear`` and GPT-2's ``Conv1D``, not the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m for name, m in model.named_modules() if is_linear(m) and m is not head}


def is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def linear_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight as ``(d_out, d_in)`` (GPT-2's ``Conv1D`` stores it transposed)."""
    return module.weight.T if type(module).__name__ == "Conv1D" else module.weight


def task_vectors(base: torch.nn.Module, finetuned: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Per linear module, ``W_ft − W_base`` (d_out, d_in); and the names of other parameters that differ, which a
    LoRA expert cannot carry (norms, biases, embeddings)."""
    base_linear, ft_modules = linear_modules(base), dict(finetuned.named_modules())
    deltas = {}
    for name, module in base_linear.items():
        other = ft_modules.get(name)
        if other is None or not is_linear(other) or linear_weight(other).shape != linear_weight(module).shape:
            raise ExpertError(f"the fine-tuned model has no linear module {name!r} shaped like the base model's; "
                              "it must share the base model's architecture")
        delta = (linear_weight(other).detach().float() - linear_weight(module).detach().float())
        if delta.abs().max() > 0:
            deltas[name] = delta
    linear_weights = {f"{n}.weight" for n in base_linear}
    ft_params = dict(finetuned.named_parameters())
    dropped = [n for n, p in base.named_parameters()
               if n not in linear_weights and n in ft_params and not torch.equal(p.detach(), ft_params[n].detach())]
    return deltas, dropped


def expert_from_finetuned(name: str, preference: Sequence[float], base: torch.nn.Module, finetuned: torch.nn.Module,
                          *, rank: int | None = None, energy: float | None = None) -> tuple[Expert, list[str]]:
    """Training-free expert from a single-objective model (HoE level 1a): task-SVD of every linear module's task
    vector. Returns the expert and the parameters whose change it drops."""
    deltas, dropped = task_vectors(base, finetuned)
    if not deltas:
        raise ExpertError(f"expert {name!r}: the fine-tuned model's linear weights equal the base model's")
    return compress(name, preference, deltas, rank=rank, energy=energy), dropped


def expert_from_adapter(name: str, preference: Sequence[float], adapter_dir: str | Path) -> Expert:
    """An expert from a PEFT LoRA adapter folder (any trainer's), scaling folded into ``B``; read with safetensors."""
    from safetensors.torch import load_file

    path = Path(adapter_dir)
    config_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.exists() or not weights_file.exists():
        raise ExpertError(f"{path}: not a PEFT adapter folder (needs adapter_config.json and adapter_model.safetensors)")
    config = json.loads(config_file.read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ExpertError(f"{path}: only plain LoRA adapters can be experts (got {config.get('peft_type')}"
                          f"{', DoRA' if config.get('use_dora') else ''})")
    try:
        tensors = load_file(str(weights_file))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise ExpertError(f"{weights_file}: cannot be read ({error})") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if match:
            pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    if not pairs:
        raise ExpertError(f"{weights_file}: holds no LoRA weights")
    factors = {}
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise ExpertError(f"{weights_file}: module {module!r} has lora_{''.join(pair)} but not both A and B")
        r = pair["A"].shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", r))
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        factors[module] = (pair["A"].float(), pair["B"].float() * scaling)
    return Expert(name, [float(p) for p in preference], factors)


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?{pattern}$", module):
            return value
    return default


def merged_expert(name: str, preference: Sequence[float], experts: Sequence[Expert], *, method: str = "ties",
                  density: float = 0.2, rank: int | None = None, energy: float | None = None) -> Expert:
    """An anchor expert (HoE level 1b): the experts' task vectors merged with weights ``preference`` (in the
    experts' order), then compressed by task-SVD. Without ``rank``/``energy`` the rank is the largest expert rank
    of each module."""
    if len(preference) != len(experts):
        raise ExpertError(f"anchor {name!r}: {len(preference)} weights for {len(experts)} experts")
    modules = sorted({m for e in experts for m in e.factors})
    factors, errors = {}, {}
    for module in modules:
        present = [e for e in experts if module in e.factors]
        shape = present[0].delta(module).shape
        deltas = [e.delta(module) if module in e.factors else torch.zeros(shape) for e in experts]
        merged = merge_task_vectors(deltas, preference, method=method, density=density)
        module_rank = rank if rank is not None or energy is not None else max(e.factors[module][0].shape[0]
                                                                              for e in present)
        a, b, error = task_svd(merged, rank=module_rank, energy=energy)
        if a.shape[0]:
            factors[module], errors[module] = (a, b), error
    combined = [sum(w * e.preference[k] for w, e in zip(preference, experts)) for k in range(len(experts[0].preference))]
    return Expert(name, combined, factors, errors)
