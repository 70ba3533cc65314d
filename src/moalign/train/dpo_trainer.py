"""Multi-objective DPO on top of ``accelerate``: per-objective losses from one forward, one combination rule.

Each optimizer step draws its pairs (``moalign.data.StepSampler``), counts the pairs each objective labels
over all processes, and hands the per-objective DPO losses of its micro-batches to
``moalign.train.objective_step.MultiObjectiveStep``, which writes ``sum_k w_k grad L_k`` into ``.grad``
with ``L_k`` the step's mean over those pairs, whatever the rule, accumulation or number of processes.
Then clip, optimizer and scheduler step; log; evaluate and checkpoint at the configured intervals.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from moalign.data import PreferenceCollator, PreferenceDataset, StepSampler
from moalign.models import LoraSpec, add_lora, load_model, load_tokenizer, sequence_logprobs
from moalign.moo import get_rule
from moalign.preference import normalize_preference
from moalign.train.base import TrainerBase
from moalign.train.checkpoint import CheckpointError
from moalign.train.dpo_config import MultiObjectiveDPOConfig
from moalign.train.losses import ObjectiveLosses, label_counts, objective_losses, pair_margins
from moalign.train.objective_step import MultiObjectiveStep, check_distributed_geometry
from moalign.train.reference import ReferenceLogps, dataset_fingerprint, precompute_reference_logps
from moalign.train.step import StepTotals


NO_LABELS = "no objective has a strictly labelled pair in this step"


class MultiObjectiveDPOTrainer(TrainerBase):
    """Train one policy on K objectives' preference pairs with a weight rule from ``moalign.moo``.

    Pass a config and, optionally, a model, its tokenizer (``processing_class``, or ``tokenizer`` as an
    alias) and datasets already in memory; anything not given is loaded as the config says. ``train()``
    runs (or resumes) training and saves the final model; ``evaluate()`` reports per-objective held-out
    preference accuracy and margins.
    """

    tracker_project = "moalign-dpo"

    def __init__(
        self,
        config: MultiObjectiveDPOConfig,
        *,
        model: torch.nn.Module | None = None,
        processing_class: Any = None,
        tokenizer: Any = None,
        train_dataset: PreferenceDataset | None = None,
        eval_dataset: PreferenceDataset | None = None,
    ):
        if processing_class is not None and tokenizer is not None:
            raise TypeError("give the tokenizer once: processing_class= (tokenizer= is its alias)")
        super().__init__(config)
        set_seed(config.seed)
        self.train_dataset, self.eval_dataset = self.preference_datasets(train_dataset, eval_dataset)
        self.objectives = tuple(self.train_dataset.objectives)
        self.preference = self.rule_preference()
        self.rule = get_rule(config.rule, **config.rule_options)
        check_distributed_geometry(self.rule, self.accelerator, config.rule)

        tokenizer = processing_class if processing_class is not None else tokenizer
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
        model = model if model is not None else load_model(config.model, dtype=config.dtype)
        if config.use_lora:
            model = add_lora(model, LoraSpec(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules))
        self.collator = PreferenceCollator(self.tokenizer, self.objectives, config.max_length, config.max_prompt_length)
        self.sampler = StepSampler(len(self.train_dataset), config.per_device_batch_size, config.gradient_accumulation_steps,
                                   self.accelerator.num_processes, config.seed, config.leftover)
        self.total_steps = config.max_steps or max(1, math.ceil(config.num_epochs * self.sampler.steps_per_epoch))
        optimizer, self.scheduler = self.build_optimizer(model, self.total_steps)
        frozen = copy.deepcopy(model).eval().requires_grad_(False) if config.reference_mode == "copy" else None
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # FSDP2 replaces them by DTensors
        self.objective_step = MultiObjectiveStep(self.accelerator, self.model, self.params, self.rule, self.objectives,
                                                 preference=self.preference, gram_every=config.gram_every,
                                                 gradient_method=config.gradient_method)
        self.reference = ReferenceLogps(config.reference_mode, self.accelerator.unwrap_model(self.model),
                                        frozen=None if frozen is None else frozen.to(self.accelerator.device))
        if config.reference_mode == "precomputed":
            self._precompute_reference()

    # ---- data -------------------------------------------------------------------------------------

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

    def rule_preference(self) -> torch.Tensor | None:
        """The preference vector the combination rule is given: the config's, over the data's objectives."""
        preference = self.config.preference
        return None if preference is None else torch.as_tensor(normalize_preference(preference, self.objectives))

    def implicit_margins(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], index: list[int],
                         split: str) -> torch.Tensor:
        """``(B,)`` implicit reward margins ``h`` of one collated batch (policy forward + reference log-probs)."""
        with self.accelerator.autocast():
            policy = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        reference = self.reference(batch, index, split)
        return pair_margins(policy, reference)  # float32 or wider: sequence_logprobs upcasts half precision

    def objective_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], index: list[int], split: str) -> ObjectiveLosses:
        """Per-objective DPO losses of one collated batch."""
        margins = self.implicit_margins(model, batch, index, split)
        return objective_losses(margins, batch["labels"], batch["label_mask"], beta=self.config.beta, loss_type=self.config.loss_type)

    def skip_reason(self, counts: torch.Tensor) -> str | None:
        """Why a step whose pairs label the objectives ``counts`` times has nothing to train on, or None."""
        return None if counts.any() else NO_LABELS

    def compute_gradients(self, step: int) -> dict[str, Any]:
        """Write step ``step``'s update ``sum_k w_k grad L_k`` into ``.grad`` and return its metrics
        (``skipped`` with a reason, and no gradient, when no objective has a labelled pair)."""
        self.model.train()
        rank = self.accelerator.process_index
        micros = []
        for m in range(self.config.gradient_accumulation_steps):
            index = self.sampler.indices(step, m, rank)
            micros.append((index, self.make_batch(self.train_dataset, index)))
        counts = self.objective_step.reduce(sum(label_counts(b["labels"], b["label_mask"]).double().cpu() for _, b in micros))
        reason = self.skip_reason(counts)
        if reason is not None:
            return {"skipped": reason}
        result = self.objective_step.run(step, micros, counts,
                               lambda model, micro: self.objective_losses(model, micro[1], micro[0], "train"))
        losses, accuracy, margin = result.totals.means(counts)
        metrics: dict[str, Any] = {"exact_gradients": float(result.refreshed)}
        for k, name in enumerate(self.objectives):
            metrics[f"{name}/loss"] = float(losses[k])
            metrics[f"{name}/accuracy"] = float(accuracy[k])
            metrics[f"{name}/margin"] = float(margin[k])
            metrics[f"{name}/pairs"] = int(counts[k])
            metrics[f"{name}/weight"] = float(result.weights[k])
        metrics.update({k: float(v) for k, v in result.info.items() if isinstance(v, (int, float))})
        return metrics

    def apply_gradients(self, step: int) -> dict[str, float]:
        """Clip, step the optimizer and the schedule, clear the gradients; return the learning rate and norm."""
        return self.clip_and_step(self.params, step)

    def training_step(self, step: int) -> dict[str, Any]:
        """One optimizer step; returns the metrics to log."""
        metrics = self.compute_gradients(step)
        if "skipped" in metrics:
            self.optimizer.zero_grad(set_to_none=True)
            return metrics
        return {**self.apply_gradients(step), **metrics}

    # ---- evaluation, checkpoints, the loop ----------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, dataset: PreferenceDataset | None = None) -> dict[str, dict[str, float]]:
        """Held-out preference accuracy (implicit reward sign agrees with the label) and margin per objective; each
        process scores its share of the pairs."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        split = "eval" if dataset is self.eval_dataset else "train"
        if self.config.reference_mode == "precomputed" and all(dataset is not d for d in (self.eval_dataset, self.train_dataset)):
            raise ValueError("with reference: precomputed, evaluate() works on the train and eval datasets only")
        self.model.eval()
        totals = StepTotals(len(self.objectives))
        batches = list(self.eval_batches(len(dataset), self.config.per_device_batch_size * 2))
        for index, counted in tqdm(batches, desc=f"eval[{split}]", leave=False, disable=not self.accelerator.is_main_process):
            out = self.objective_losses(self.model, self.make_batch(dataset, index), index, split)
            if counted:
                totals.add(out)
        totals.reduce(self.objective_step.reduce)
        losses, accuracy, margin = totals.means()
        return {
            name: {"accuracy": float(accuracy[k]), "margin": float(margin[k]), "loss": float(losses[k]),
                   "pairs": int(totals.counts[k])}
            for k, name in enumerate(self.objectives)
        }

    def checkpoint_state(self) -> dict[str, Any]:
        return {**self.objective_step.state_dict(), "sampler": self.sampler.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("sampler") not in (None, self.sampler.state_dict()):
            raise CheckpointError(f"the checkpoint drew its pairs as {state['sampler']}, this run as "
                                  f"{self.sampler.state_dict()}: the data or batch layout changed")
        self.objective_step.load_state_dict(state)

    @property
    def progress_label(self) -> str:
        return f"dpo[{self.config.rule}]"

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {f"{n[:8]}_acc": f"{metrics[f'{n}/accuracy']:.2f}" for n in self.objectives}

    def run_summary(self) -> dict[str, Any]:
        return {"rule": self.config.rule, "train_pairs": len(self.train_dataset)}
