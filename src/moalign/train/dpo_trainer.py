"""Multi-objective DPO on top of ``accelerate``: per-objective losses from one forward, one combination rule.

Each optimizer step:

1. one policy forward on both responses of every pair (shared by all objectives) and reference log-probs;
2. K per-objective DPO losses (ties and absent labels masked);
3. if the rule needs the Gram (MGDA family, PCGrad, CAGrad) and this is a refresh step: K gradients as
   vector-Jacobian products of that one graph, their K x K Gram, the rule's weights, and the weighted
   direction written into ``.grad``; otherwise one backward pass of ``sum_k w_k L_k`` (weights from the
   rule, or reused from the last refresh when ``gram_every > 1``);
4. clip, optimizer and scheduler step; log; evaluate and checkpoint at the configured intervals.

Across processes the Gram never needs a whole gradient in one place: data-parallel ranks reduce-scatter
each objective's gradient, FSDP2 ranks already hold shards, and either way the K x K Gram is an
all-reduce of the shards' Grams (``moalign.train.sharded``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from moalign.config import config_to_dict
from moalign.data import PreferenceCollator, PreferenceDataset
from moalign.models import LoraSpec, add_lora, load_model, load_tokenizer, sequence_logprobs
from moalign.moo import ObjectiveStats, get_rule
from moalign.preference import normalize_preference
from moalign.storage import write_json_atomic
from moalign.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from moalign.train.data import load_training_data
from moalign.train.dpo_config import MultiObjectiveDPOConfig
from moalign.train.gradients import (
    NonFiniteError,
    accumulate_direction,
    check_grads_finite,
    gram_from_grads,
    per_objective_grads,
)
from moalign.train.losses import ObjectiveLosses, objective_losses, pair_margins
from moalign.train.per_pair import PerPairGradients, pair_gram, per_pair_from_sequences
from moalign.train.reference import ReferenceLogps, dataset_fingerprint, precompute_reference_logps
from moalign.train.sharded import all_gather_as, reduce_scatter_flat, sharded_gram

logger = logging.getLogger(__name__)


def _allow_new_mixed_precision(mixed_precision: str) -> None:
    """accelerate keeps one process-wide ``AcceleratorState`` and refuses a second ``Accelerator`` with another
    precision, so a notebook could not train in bf16 after fp32. Forget that state (not the distributed
    ``PartialState``, which stays) when the precision changes."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


class MultiObjectiveDPOTrainer:
    """Train one policy on K objectives' preference pairs with a combination rule from ``moalign.moo``.

    Pass a config and, optionally, a model/tokenizer and datasets already in memory; anything not
    given is loaded as the config says. ``train()`` runs (or resumes) training and saves the final
    model; ``evaluate()`` reports per-objective held-out preference accuracy and margins.
    """

    def __init__(
        self,
        config: MultiObjectiveDPOConfig,
        *,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        train_dataset: PreferenceDataset | None = None,
        eval_dataset: PreferenceDataset | None = None,
    ):
        self.config = config
        self.output_dir = Path(config.output_dir)
        _allow_new_mixed_precision(config.mixed_precision)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=1,  # accumulation is done here: per-objective gradients need it
            mixed_precision=config.mixed_precision,
            log_with=config.report_to or None,
            project_dir=str(self.output_dir),
        )
        set_seed(config.seed)
        if train_dataset is None:
            train_dataset, loaded_eval = load_training_data(config)
            eval_dataset = eval_dataset if eval_dataset is not None else loaded_eval
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.objectives = tuple(train_dataset.objectives)
        if not self.objectives:
            raise ValueError("the training data has no objectives (K = 0)")
        self.preference = (
            None if config.preference is None
            else torch.as_tensor(normalize_preference(config.preference, self.objectives))
        )
        self.rule = get_rule(config.rule, **config.rule_options)

        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
        model = model if model is not None else load_model(config.model, dtype=config.dtype)
        if config.use_lora:
            model = add_lora(model, LoraSpec(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules))
        self.collator = PreferenceCollator(self.tokenizer, self.objectives, config.max_length, config.max_prompt_length)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.total_steps = config.max_steps or math.ceil(config.num_epochs * self.steps_per_epoch)
        scheduler = get_scheduler(
            config.lr_scheduler, optimizer, num_warmup_steps=int(config.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        frozen = None
        if config.reference_mode == "copy":
            frozen = copy.deepcopy(model).eval().requires_grad_(False)
        # The scheduler stays unprepared: accelerate's wrapper steps it once per process per call, and
        # total_steps here already counts optimizer steps.
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # FSDP2 replaces them by DTensors
        self._check_distributed_geometry()
        self.scheduler = scheduler
        self.reference = ReferenceLogps(config.reference_mode, self.accelerator.unwrap_model(self.model),
                                        frozen=None if frozen is None else frozen.to(self.accelerator.device))
        if config.reference_mode == "precomputed":
            self._precompute_reference()
        self.cached_weights: torch.Tensor | None = None
        self.per_pair = self._per_pair_gradients()

    def _check_distributed_geometry(self) -> None:
        from accelerate.utils import DistributedType

        if not self.rule.needs_gram:
            return
        kind = self.accelerator.distributed_type
        if kind == DistributedType.FSDP and not self.accelerator.is_fsdp2:
            raise ValueError(f"rule {self.config.rule!r} needs per-objective gradients, which moalign reads from FSDP2 "
                             "shards: set fsdp_version: 2 in the accelerate config (or use a rule that needs only losses)")
        if kind == DistributedType.DEEPSPEED:
            raise ValueError(f"rule {self.config.rule!r} needs per-objective gradients, which DeepSpeed keeps inside its "
                             "optimizer: use FSDP2 or DDP for it, or a rule that needs only losses (e.g. linear)")

    def _per_pair_gradients(self) -> PerPairGradients | None:
        method = self.config.gradient_method
        if method == "autograd" or not self.rule.needs_gram:
            return None
        if self.accelerator.num_processes > 1:
            if method == "per_pair":
                raise ValueError("gradient_method per_pair runs in one process; use autograd with several")
            return None
        try:
            return PerPairGradients(self.accelerator.unwrap_model(self.model))
        except ValueError:
            if method == "per_pair":
                raise
            return None

    # ---- data -------------------------------------------------------------------------------------

    @property
    def pairs_per_step(self) -> int:
        c = self.config
        return c.per_device_batch_size * c.gradient_accumulation_steps * self.accelerator.num_processes

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.train_dataset) / self.pairs_per_step))

    def micro_batch_indices(self, step: int, micro: int) -> list[int]:
        """The pair indices this process trains on at ``(step, micro)``: a seeded permutation per epoch."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        order = torch.randperm(len(self.train_dataset), generator=torch.Generator().manual_seed(self.config.seed + epoch))
        size = self.config.per_device_batch_size
        start = offset * self.pairs_per_step + (micro * self.accelerator.num_processes + self.accelerator.process_index) * size
        return order[start:start + size].tolist()

    def make_batch(self, dataset: PreferenceDataset, index: list[int]) -> dict[str, torch.Tensor]:
        batch = self.collator([dataset[i] for i in index])
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def _precompute_reference(self) -> None:
        policy = self.accelerator.unwrap_model(self.model)
        tables = {}
        for split, dataset in (("train", self.train_dataset), ("eval", self.eval_dataset)):
            if dataset is None or len(dataset) == 0:
                continue
            key = dataset_fingerprint(dataset, self.config.model, self.config.max_length, self.config.max_prompt_length)
            tables[split] = precompute_reference_logps(
                policy, dataset, lambda index, ds=dataset: self.make_batch(ds, index),
                self.config.per_device_batch_size * 2, self.output_dir / f"reference-logps-{split}-{key}.safetensors",
                progress=self.accelerator.is_main_process,
            )
        self.reference.tables = tables

    # ---- one step ---------------------------------------------------------------------------------

    def objective_losses(self, model: torch.nn.Module, dataset: PreferenceDataset, index: list[int], split: str) -> ObjectiveLosses:
        """Per-objective DPO losses of one batch (policy forward + reference log-probs)."""
        batch = self.make_batch(dataset, index)
        with self.accelerator.autocast():
            policy = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        reference = self.reference(batch, index, split)
        margins = pair_margins(policy, reference)  # float32 or wider: sequence_logprobs upcasts half precision
        return objective_losses(margins, batch["labels"], batch["label_mask"], beta=self.config.beta, loss_type=self.config.loss_type)

    def _check_losses(self, out: ObjectiveLosses, step: int) -> None:
        for name, value in zip(self.objectives, out.losses.detach()):
            if not torch.isfinite(value):
                raise NonFiniteError(f"step {step}: the loss of objective {name!r} is {value.item()}")

    def _exact_step(self, step: int) -> tuple[torch.Tensor, ObjectiveLosses, dict[str, Any]]:
        """Exact per-objective geometry (accumulated over micro-batches), the rule's weights, ``.grad`` set."""
        if self.per_pair is not None:
            collect = self._collect_per_pair
        elif self.accelerator.is_fsdp2:
            collect = self._collect_sharded
        else:
            collect = self._collect_autograd
        gram, loss_sum, counts, parts, apply = collect(step)
        present = counts > 0
        for k in present.nonzero()[:, 0].tolist():
            if not torch.isfinite(gram[k, k]):
                raise NonFiniteError(f"step {step}: the gradient of objective {self.objectives[k]!r} is not finite")
        stats = ObjectiveStats(losses=loss_sum / counts.clamp_min(1), gram=gram, preference=self.preference, present=present)
        combination = self.rule.combine(stats)
        apply(combination.weights)
        self.cached_weights = combination.weights.clone()
        return combination.weights, self._merge(parts), {"gram_condition": combination.info.get("gram_condition")}

    def _micro_batches(self, step: int, model: torch.nn.Module, capture: Any = None):
        for micro in range(self.config.gradient_accumulation_steps):
            with capture() if capture is not None else contextlib.nullcontext():
                out = self.objective_losses(model, self.train_dataset, self.micro_batch_indices(step, micro), "train")
            self._check_losses(out, step)
            yield out

    def _collect_autograd(self, step: int):
        """K vector-Jacobian products of each micro-batch's graph. Across processes each objective's gradient
        is reduce-scattered (each rank keeps a slice), the Gram is an all-reduce of the slices' K x K Grams, and
        only the combined direction is gathered."""
        k = len(self.objectives)
        model = self.accelerator.unwrap_model(self.model)  # gradients are reduced by hand, not by DDP hooks
        grads: list[list[torch.Tensor] | None] = [None] * k
        parts = []
        for out in self._micro_batches(step, model):
            present = out.present.nonzero()[:, 0].tolist()
            for i, g in zip(present, per_objective_grads(out.losses, self.params, present)):
                n = float(out.counts[i])
                grads[i] = [n * t for t in g] if grads[i] is None else [a + n * t for a, t in zip(grads[i], g)]
            parts.append(out)
        loss_sum, counts = self._totals(parts)
        idx = (counts > 0).nonzero()[:, 0].tolist()
        summed = [grads[i] if grads[i] is not None else [torch.zeros_like(p) for p in self.params] for i in idx]
        gram = torch.zeros(k, k, dtype=torch.float64)
        if not idx:
            return gram, loss_sum, counts, parts, lambda weights: None
        at = (torch.tensor(idx)[:, None], torch.tensor(idx)[None, :])
        if self.accelerator.num_processes == 1:
            active = [[t / counts[i].item() for t in g] for i, g in zip(idx, summed)]
            check_grads_finite(active, [self.objectives[i] for i in idx], step)
            gram[at] = gram_from_grads(active)
            return gram, loss_sum, counts, parts, lambda weights: accumulate_direction(self.params, active, weights[idx])
        shards = [reduce_scatter_flat(g) / counts[i].item() for i, g in zip(idx, summed)]
        gram[at] = sharded_gram([[s] for s in shards])

        def apply(weights: torch.Tensor) -> None:
            direction = sum(float(w) * s for w, s in zip(weights[idx], shards))
            accumulate_direction(self.params, [all_gather_as(direction, self.params)], torch.ones(1))

        return gram, loss_sum, counts, parts, apply

    def _totals(self, parts: list[ObjectiveLosses]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per objective, the sum of pair losses and the number of pairs, over micro-batches and processes."""
        loss_sum = sum(out.losses.detach().double().cpu() * out.counts.double().cpu() for out in parts)
        counts = sum(out.counts.double().cpu() for out in parts)
        if self.accelerator.num_processes == 1:
            return loss_sum, counts
        device = self.accelerator.device
        return (self.accelerator.reduce(loss_sum.to(device), "sum").cpu(),
                self.accelerator.reduce(counts.to(device), "sum").cpu())

    def _collect_sharded(self, step: int):
        """FSDP2: one backward per objective through the sharded model; each rank keeps its shard of every
        objective's gradient, and the Gram is an all-reduce of the shards' K x K Grams (moalign.train.sharded).

        Every rank runs all K backward passes in the same order (they hold collectives), also for an
        objective absent from its own pairs, whose loss is then a zero that still spans the graph."""
        k = len(self.objectives)
        shards: list[list[torch.Tensor] | None] = [None] * k
        parts = []
        for out in self._micro_batches(step, self.model):
            anchor = 0.0 * out.margins.sum()
            for i in range(k):
                (out.losses[i] * out.counts[i] + anchor).backward(retain_graph=i < k - 1)
                grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.params]
                shards[i] = grads if shards[i] is None else [a + g for a, g in zip(shards[i], grads)]
                for p in self.params:
                    p.grad = None
            parts.append(out)
        loss_sum, counts = self._totals(parts)
        # FSDP averages gradients over ranks; each rank's loss was a sum over its pairs of objective i.
        scale = self.accelerator.num_processes / counts.clamp_min(1)
        grads = [[g * float(scale[i]) for g in shards[i]] for i in range(k)]
        gram = sharded_gram(grads)
        idx = (counts > 0).nonzero()[:, 0].tolist()

        def apply(weights: torch.Tensor) -> None:
            accumulate_direction(self.params, [grads[i] for i in idx], weights[idx])

        return gram, loss_sum, counts, parts, apply

    def _collect_per_pair(self, step: int):
        """One backward per micro-batch: per-pair gradients J and cotangents U; Gram = U J J^T U^T."""
        k = len(self.objectives)
        model = self.accelerator.unwrap_model(self.model)
        pair_grads, cotangents, parts = [], [], []
        for out in self._micro_batches(step, model, self.per_pair.capture):
            u = torch.zeros(k, out.margins.shape[0], dtype=torch.float64)
            for i in out.present.nonzero()[:, 0].tolist():
                (du,) = torch.autograd.grad(out.losses[i], out.margins, retain_graph=True)
                u[i] = du.double().cpu() * float(out.counts[i])
            torch.autograd.grad(out.margins.sum(), self.per_pair.params, allow_unused=True)  # fills the hooks
            pair_grads.append(per_pair_from_sequences(self.per_pair.per_sequence(), out.margins.shape[0]))
            cotangents.append(u)
            parts.append(out)
        loss_sum, counts = self._totals(parts)
        u = torch.cat(cotangents, dim=1) / counts.clamp_min(1)[:, None]
        jac = [torch.cat([part[j] for part in pair_grads]) for j in range(len(self.per_pair.params))]
        gram = u @ pair_gram(jac) @ u.T

        def apply(weights: torch.Tensor) -> None:
            coefficients = (u.T @ weights).to(torch.float32)
            for p, g in zip(self.per_pair.params, jac):
                update = torch.einsum("b,boi->oi", coefficients.to(g.device), g).to(p.dtype)
                p.grad = update if p.grad is None else p.grad + update

        return gram, loss_sum, counts, parts, apply

    def _scalarised_step(self, step: int) -> tuple[torch.Tensor, ObjectiveLosses, dict[str, Any]]:
        """One backward pass of ``sum_k w_k L_k`` per micro-batch."""
        parts, weights = [], None
        accum = self.config.gradient_accumulation_steps
        for micro in range(accum):
            out = self.objective_losses(self.model, self.train_dataset, self.micro_batch_indices(step, micro), "train")
            self._check_losses(out, step)
            if self.rule.needs_gram:  # reuse the weights of the last refresh
                weights = self.cached_weights * out.present.cpu()
            else:
                stats = ObjectiveStats(losses=out.losses.detach().cpu(), preference=self.preference, present=out.present.cpu())
                weights = self.rule.combine(stats).weights
            total = (weights.to(out.losses.device, out.losses.dtype) * out.losses).sum() / accum
            self.accelerator.backward(total)
            parts.append(out)
        return weights, self._merge(parts), {}

    @staticmethod
    def _merge(parts: list[ObjectiveLosses]) -> ObjectiveLosses:
        counts = sum(p.counts for p in parts)
        denom = counts.clamp_min(1)
        mean = lambda attr: sum(getattr(p, attr).detach() * p.counts for p in parts) / denom  # noqa: E731
        return ObjectiveLosses(mean("losses"), counts, mean("accuracy"), mean("margin"))

    def training_step(self, step: int) -> dict[str, float]:
        """One optimizer step; returns the metrics to log."""
        self.model.train()
        refresh = self.rule.needs_gram and (self.cached_weights is None or step % self.config.gram_every == 0)
        weights, out, info = (self._exact_step if refresh else self._scalarised_step)(step)
        grad_norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        if not torch.isfinite(torch.as_tensor(grad_norm)):
            raise NonFiniteError(f"step {step}: the combined gradient is not finite")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {"lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "exact_gradients": float(refresh)}
        for k, name in enumerate(self.objectives):
            metrics[f"{name}/loss"] = float(out.losses[k])
            metrics[f"{name}/accuracy"] = float(out.accuracy[k])
            metrics[f"{name}/margin"] = float(out.margin[k])
            metrics[f"{name}/weight"] = float(weights[k])
        if info.get("gram_condition") is not None:
            metrics["gram_condition"] = float(info["gram_condition"])
        return metrics

    # ---- evaluation, checkpoints, the loop ----------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, dataset: PreferenceDataset | None = None) -> dict[str, dict[str, float]]:
        """Held-out preference accuracy (implicit reward sign agrees with the label) and margin per objective."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        split = "eval" if dataset is self.eval_dataset else "train"
        if self.config.reference_mode == "precomputed" and all(dataset is not d for d in (self.eval_dataset, self.train_dataset)):
            raise ValueError("with reference: precomputed, evaluate() works on the train and eval datasets only")
        self.model.eval()
        parts = []
        size = self.config.per_device_batch_size * 2
        starts = range(0, len(dataset), size)
        for start in tqdm(starts, desc=f"eval[{split}]", leave=False, disable=not self.accelerator.is_main_process):
            parts.append(self.objective_losses(self.model, dataset, list(range(start, min(start + size, len(dataset)))), split))
        merged = self._merge(parts)
        return {
            name: {"accuracy": float(merged.accuracy[k]), "margin": float(merged.margin[k]),
                   "loss": float(merged.losses[k]), "pairs": int(merged.counts[k])}
            for k, name in enumerate(self.objectives)
        }

    def save_checkpoint(self, step: int) -> Path:
        self.accelerator.wait_for_everyone()
        path = self.output_dir / f"checkpoint-{step}"
        save_checkpoint(path, model=self.accelerator.unwrap_model(self.model), optimizer=self.optimizer,
                        scheduler=self.scheduler, step=step, write=self.accelerator.is_main_process,
                        extra={"rule": self.rule.state_dict(),
                               "cached_weights": None if self.cached_weights is None else self.cached_weights.tolist()})
        if self.accelerator.is_main_process:
            kept = sorted(self.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in kept[: max(0, len(kept) - self.config.save_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def _resume(self, resume_from: str | Path | bool) -> int:
        path = latest_checkpoint(self.output_dir) if resume_from in (True, "latest") else Path(resume_from)
        if path is None:
            logger.info("no checkpoint in %s; starting from scratch", self.output_dir)
            return 0
        state = load_checkpoint(path, model=self.accelerator.unwrap_model(self.model), optimizer=self.optimizer, scheduler=self.scheduler)
        self.rule.load_state_dict(state.get("rule") or {})
        cached = state.get("cached_weights")
        self.cached_weights = None if cached is None else torch.tensor(cached, dtype=torch.float64)
        logger.info("resumed from %s at step %d", path, state["step"])
        return int(state["step"])

    def train(self, resume_from: str | Path | bool | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (resuming from a checkpoint if asked) and save the final model."""
        c = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        start = self._resume(resume_from) if resume_from else 0
        if c.report_to:
            self.accelerator.init_trackers("moalign-dpo", config={k: str(v) for k, v in config_to_dict(c).items()})
        before = self.evaluate() if start == 0 and c.eval_before else None
        log_path = self.output_dir / "log.jsonl"
        bar = tqdm(total=self.total_steps, initial=start, desc=f"dpo[{c.rule}]", disable=not self.accelerator.is_main_process)
        started = time.time()
        for step in range(start, self.total_steps):
            metrics = self.training_step(step)
            bar.update(1)
            done = step + 1
            if c.logging_steps and (done % c.logging_steps == 0 or done == self.total_steps):
                self._log({"step": done, **metrics}, log_path)
                bar.set_postfix({f"{n[:8]}_acc": f"{metrics[f'{n}/accuracy']:.2f}" for n in self.objectives})
            if c.eval_steps and done % c.eval_steps == 0 and done != self.total_steps:
                self._log({"step": done, "eval": self.evaluate()}, log_path)
            if c.save_steps and done % c.save_steps == 0:
                self.save_checkpoint(done)
        bar.close()
        after = self.evaluate()
        summary = {"objectives": list(self.objectives), "rule": c.rule, "steps": self.total_steps,
                   "processes": self.accelerator.num_processes,
                   "distributed": self.accelerator.distributed_type.value, "resumed_at_step": start,
                   "train_pairs": len(self.train_dataset), "eval_before": before, "eval_after": after,
                   "seconds": round(time.time() - started, 1), "config": config_to_dict(c)}
        self._log({"step": self.total_steps, "eval": after}, log_path)
        self.save_final(summary)
        self.accelerator.end_training()
        return summary

    def _log(self, record: dict[str, Any], path: Path) -> None:
        if not self.accelerator.is_main_process:
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        flat = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        if self.config.report_to and flat:
            self.accelerator.log(flat, step=record["step"])

    def save_final(self, summary: dict[str, Any]) -> Path:
        """``output_dir/final``: ``save_pretrained`` of the adapter (or model) and tokenizer, plus a summary."""
        self.accelerator.wait_for_everyone()
        final = self.output_dir / "final"
        # Under FSDP2 the full weights are gathered (every rank takes part) before rank 0 writes them.
        state_dict = self.accelerator.get_state_dict(self.model) if self.accelerator.is_fsdp2 else None
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(self.model).save_pretrained(final, state_dict=state_dict)
            self.tokenizer.save_pretrained(final)
            write_json_atomic(final / "moalign_training.json", summary)
        return final
