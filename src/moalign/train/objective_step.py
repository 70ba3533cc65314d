"""One multi-objective optimizer step, shared by every trainer whose per-objective losses come from a
forward pass over micro-batches (DPO's per-objective losses now, RL's per-objective PPO losses next).

Whatever the path, the step writes ``sum_k w_k grad L_k`` into ``.grad``, where ``L_k`` is objective k's
mean over the step's labelled items (all micro-batches, all processes), and the rule is called once on
the step's statistics:

* a Gram rule at a refresh step: each micro-batch's forward feeds a gradient collector
  (``moalign.train.collectors``) with its losses and shares ``n_km / N_k``; the reduced Gram and the step
  losses give the weights, and the collector writes the combined direction;
* otherwise the weights come first (cached from the last refresh, the preference alone, or the rule on the
  step's losses / representation Gram, gathered by a pass before the backward when the step has several
  micro-batches, replaying each forward's random state) and each micro-batch backpropagates
  ``sum_k w_k n_km / N_k L_km``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from moalign.config import ConfigError
from moalign.moo import CombinationRule, Needs, ObjectiveStats
from moalign.train.collectors import (
    AutogradCollector,
    GradientCollector,
    PerPairCollector,
    RepresentationCollector,
    ShardedCollector,
    StepGeometry,
)
from moalign.train.gradients import NonFiniteError
from moalign.train.losses import ObjectiveLosses
from moalign.train.step import StepTotals, gram_diagnostics, rng_state, set_rng_state

Forward = Callable[[torch.nn.Module, Any], ObjectiveLosses]
"""Per-objective losses of one micro-batch under the given model (with its graph when grad is enabled)."""


def check_distributed_geometry(rule: CombinationRule, accelerator: Accelerator, rule_name: str) -> None:
    """Refuse a rule that needs parameter gradients where moalign cannot read them; trainers call it as soon
    as the accelerator exists, before any model loads."""
    if Needs.GRAM not in rule.needs:
        return
    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP and not accelerator.is_fsdp2:
        raise ConfigError(f"rule {rule_name!r} needs per-objective gradients, which moalign reads from FSDP2 "
                          "shards: set fsdp_version: 2 in the accelerate config (or use a rule that needs only losses)")
    if kind == DistributedType.DEEPSPEED:
        raise ConfigError(f"rule {rule_name!r} needs per-objective gradients, which DeepSpeed keeps inside its "
                          "optimizer: use FSDP2 or DDP for it, or a rule that needs only losses (e.g. linear)")


def make_geometry(rule: CombinationRule, accelerator: Accelerator, model: torch.nn.Module,
                  params: Sequence[torch.nn.Parameter], objectives: Sequence[str],
                  method: str = "auto") -> StepGeometry | None:
    """The collector a rule needs: per-pair (LoRA, one process, unless ``method`` is ``autograd``), sharded
    (FSDP2), autograd VJPs, or representation gradients (MGDA-UB); ``None`` for rules that need no Gram."""
    unwrapped = accelerator.unwrap_model(model)
    if Needs.REPRESENTATION_GRAM in rule.needs:
        return RepresentationCollector(unwrapped, objectives)
    if Needs.GRAM not in rule.needs:
        return None
    if method != "autograd" and accelerator.num_processes == 1:
        try:
            return PerPairCollector(unwrapped, objectives)
        except ValueError:
            if method == "per_pair":
                raise
    elif method == "per_pair":
        raise ConfigError("gradient_method per_pair runs in one process; use autograd with several")
    if accelerator.is_fsdp2:
        return ShardedCollector(params, objectives, accelerator.num_processes)
    return AutogradCollector(params, objectives)


@dataclass
class StepResult:
    """What one step computed: the weights applied, the step's totals and the rule's diagnostics."""

    weights: torch.Tensor
    totals: StepTotals
    refreshed: bool
    info: dict[str, Any] = field(default_factory=dict)


class MultiObjectiveStep:
    """Writes one optimizer step's ``sum_k w_k grad L_k`` into ``.grad`` (see the module docstring).

    Args:
        accelerator, model, params: the prepared model and its trained parameters.
        rule: the weight rule; ``preference`` its preference vector (``None``: uniform).
        objectives: the objective names, in the order of the losses.
        gram_every: refresh a Gram rule's weights every N steps and reuse them in between.
        gradient_method: ``auto``, ``per_pair`` or ``autograd`` (see :func:`make_geometry`).
    """

    def __init__(self, accelerator: Accelerator, model: torch.nn.Module, params: Sequence[torch.nn.Parameter],
                 rule: CombinationRule, objectives: Sequence[str], *, preference: torch.Tensor | None = None,
                 gram_every: int = 1, gradient_method: str = "auto"):
        self.accelerator, self.model, self.rule = accelerator, model, rule
        self.objectives, self.preference, self.gram_every = tuple(objectives), preference, gram_every
        self.geometry = make_geometry(rule, accelerator, model, params, objectives, gradient_method)
        self.cached_weights: torch.Tensor | None = None

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (float64 on the CPU)."""
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor.to(self.accelerator.device), "sum").cpu()

    def run(self, step: int, micros: Sequence[Any], counts: torch.Tensor, forward: Forward) -> StepResult:
        """Run step ``step`` over this process's ``micros``; ``counts`` are the step's labelled items per
        objective summed over processes (at least one non-zero)."""
        def checked(model: torch.nn.Module, micro: Any) -> ObjectiveLosses:
            out = forward(model, micro)
            for name, value in zip(self.objectives, out.losses.detach()):
                if not torch.isfinite(value):
                    raise NonFiniteError(f"step {step}: the loss of objective {name!r} is {value.item()}")
            return out

        refresh = self.rule.needs_gram and (self.cached_weights is None or step % self.gram_every == 0)
        if refresh and isinstance(self.geometry, GradientCollector):
            result = self._gram_step(step, micros, counts, checked)
        else:
            result = self._weighted_step(step, micros, counts, refresh, checked)
        if refresh:
            self.cached_weights = result.weights.clone()
        return result

    def _stats(self, totals: StepTotals, counts: torch.Tensor, gram: torch.Tensor | None = None) -> ObjectiveStats:
        return ObjectiveStats(losses=totals.means(counts)[0], gram=gram, preference=self.preference, present=counts > 0)

    def _gram_step(self, step: int, micros: Sequence[Any], counts: torch.Tensor, forward: Forward) -> StepResult:
        """Refresh step of a Gram rule: the collector accumulates the step's K gradients and writes the update."""
        geometry: GradientCollector = self.geometry
        model = self.model if isinstance(geometry, ShardedCollector) else self.accelerator.unwrap_model(self.model)
        geometry.begin(counts > 0)
        totals = StepTotals(len(self.objectives))
        for micro in micros:
            with geometry.capture():
                out = forward(model, micro)
            geometry.add(out, out.counts.detach().double().cpu() / counts.clamp_min(1))
            totals.add(out)
        gram = geometry.gram()
        geometry.check_finite(gram, step)
        totals.reduce(self.reduce)
        combination = self.rule.combine(self._stats(totals, counts, gram))
        geometry.apply(combination.weights)
        info = {**combination.info, **gram_diagnostics(gram, self.objectives)}
        return StepResult(combination.weights, totals, True, info)

    def _weights_from_statistics(
        self, step: int, micros: Sequence[Any], counts: torch.Tensor, refresh: bool, totals: StepTotals,
        forward: Forward,
    ) -> tuple[torch.Tensor, dict, ObjectiveLosses | None, list | None]:
        """The rule on this step's losses (and, for MGDA-UB, representation Gram), before any backward.

        Returns the weights, their diagnostics, and either the one micro-batch's forward with its graph
        (kept for the backward) or each micro-batch's random state, so that the backward pass repeats
        every forward with the same dropout masks.
        """
        representation = refresh and isinstance(self.geometry, RepresentationCollector)
        if representation:
            self.geometry.begin(counts > 0)
        keep = len(micros) == 1
        kept, states = None, []
        for micro in micros:
            states.append(rng_state(self.accelerator.device))
            model = self.model if keep else self.accelerator.unwrap_model(self.model)
            capture = self.geometry.capture() if representation else contextlib.nullcontext()
            with capture, torch.set_grad_enabled(keep or representation):
                out = forward(model, micro)
            if representation:
                self.geometry.add(out, out.counts.detach().double().cpu() / counts.clamp_min(1))
            totals.add(out)
            kept = out if keep else None
        totals.reduce(self.reduce)
        info: dict[str, Any] = {}
        gram = None
        if representation:
            gram = self.geometry.gram()
            self.geometry.check_finite(gram, step)
            info.update(gram_diagnostics(gram, self.objectives))
        combination = self.rule.combine(self._stats(totals, counts, gram))
        info.update(combination.info)
        return combination.weights, info, kept, None if keep else states

    def _weighted_step(self, step: int, micros: Sequence[Any], counts: torch.Tensor, refresh: bool,
                       forward: Forward) -> StepResult:
        """Weights first, then one backward of ``sum_k w_k n_km / N_k L_km`` per micro-batch."""
        present = counts > 0
        totals = StepTotals(len(self.objectives))
        info: dict[str, Any] = {}
        kept, replay, counted = None, None, False
        if self.rule.needs_gram and not refresh:
            weights = self.cached_weights * present
        elif not self.rule.needs:
            weights = self.rule.combine(ObjectiveStats(preference=self.preference, present=present)).weights
        else:
            weights, info, kept, replay = self._weights_from_statistics(step, micros, counts, refresh, totals, forward)
            counted = True
        scale = self.accelerator.num_processes  # DDP and FSDP average gradients over processes
        for m, micro in enumerate(micros):
            if kept is not None:
                out = kept
            else:
                if replay is not None:
                    set_rng_state(replay[m], self.accelerator.device)
                out = forward(self.model, micro)
                if not counted:
                    totals.add(out)
            shares = out.counts.detach().double().cpu() / counts.clamp_min(1) * weights * scale
            loss = (shares.to(out.losses.device, out.losses.dtype) * out.losses).sum()
            sync = m == len(micros) - 1  # gradients are reduced over processes once, after the last micro-batch
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                self.accelerator.backward(loss)
        if not counted:
            totals.reduce(self.reduce)
        return StepResult(weights, totals, refresh, info)

    def state_dict(self) -> dict[str, Any]:
        """The rule's state and the cached weights, for checkpoints."""
        return {"rule": self.rule.state_dict(),
                "cached_weights": None if self.cached_weights is None else self.cached_weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state.get("rule") or {})
        cached = state.get("cached_weights")
        self.cached_weights = None if cached is None else torch.tensor(cached, dtype=torch.float64)
