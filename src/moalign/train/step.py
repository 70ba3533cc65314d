"""Small pieces of an optimizer step that every trainer shares: step totals, Gram diagnostics, random state."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from moalign.train.losses import ObjectiveLosses


class StepTotals:
    """Per-objective sums over a step's micro-batches (and, after :meth:`reduce`, its processes).

    The step's loss of objective k is ``loss_sum[k] / N_k``: the count-weighted mean over every labelled
    pair of the step, the quantity the update descends and the log reports.
    """

    def __init__(self, num_objectives: int):
        self.sums = torch.zeros(4, num_objectives, dtype=torch.float64)  # loss, accuracy, margin, count

    def add(self, out: ObjectiveLosses) -> None:
        counts = out.counts.detach().double().cpu()
        for row, value in enumerate((out.losses, out.accuracy, out.margin)):
            self.sums[row] += value.detach().double().cpu() * counts
        self.sums[3] += counts

    def reduce(self, sum_over_processes: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.sums = sum_over_processes(self.sums)

    @property
    def counts(self) -> torch.Tensor:
        return self.sums[3]

    def means(self, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, accuracy, margin)`` per objective, each a mean over the labelled pairs (0 where none)."""
        denom = (self.counts if counts is None else counts).clamp_min(1)
        return self.sums[0] / denom, self.sums[1] / denom, self.sums[2] / denom


def gram_diagnostics(gram: torch.Tensor, objectives: Sequence[str]) -> dict[str, float]:
    """Per-objective gradient norms and pairwise cosines, read off the Gram: how much the objectives conflict."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    out = {f"{name}/grad_norm": float(norms[k]) for k, name in enumerate(objectives)}
    for i in range(len(objectives)):
        for j in range(i + 1, len(objectives)):
            if norms[i] > 0 and norms[j] > 0:
                out[f"cosine/{objectives[i]}~{objectives[j]}"] = float(gram[i, j] / (norms[i] * norms[j]))
    return out


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The random state a forward pass on ``device`` draws from (dropout), to replay that forward exactly."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    cpu, accelerator = state
    torch.set_rng_state(cpu)
    if accelerator is not None:
        torch.cuda.set_rng_state(accelerator, device)
