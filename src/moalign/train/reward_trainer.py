"""Multi-objective reward models: Bradley-Terry per objective on the pairs' per-objective labels.

Both responses of B pairs go through the backbone in one batch of 2B rendered conversations (as
``moalign.objectives.RewardModelScorer`` renders them when it scores); the head gives K rewards per
sequence, and objective k's margin on a pair is the difference of its two rewards. The step's update
comes from ``MultiObjectiveStep`` with equal weights (the linear rule), so accumulation and data
parallelism compute the same mean loss as one large batch, and checkpoints, resume and logs are the
shared trainer core's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from moalign.data import PreferenceDataset, StepSampler
from moalign.data.collate import pair_labels
from moalign.models import LoraSpec, add_lora, load_tokenizer, padding_id, resolve_dtype, resolve_model_path
from moalign.moo import get_rule
from moalign.objectives.reward_model import encode_conversations, sequence_rewards
from moalign.stats import wilson_interval
from moalign.train.base import TrainerBase
from moalign.train.checkpoint import CheckpointError
from moalign.train.losses import ObjectiveLosses, label_counts, objective_losses
from moalign.train.objective_step import MultiObjectiveStep
from moalign.train.reward_config import RewardModelConfig
from moalign.train.step import StepTotals


def load_reward_backbone(name_or_path: str, objectives: tuple[str, ...], *, dtype: str, pad_token_id: int) -> torch.nn.Module:
    """A sequence-classification model with one fresh output per objective on ``name_or_path``'s backbone."""
    from transformers import AutoModelForSequenceClassification

    labels = dict(enumerate(objectives))
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(name_or_path), num_labels=len(objectives), id2label=labels,
        label2id={v: k for k, v in labels.items()}, dtype=resolve_dtype(dtype))
    model.config.pad_token_id = pad_token_id
    return model


class RewardModelTrainer(TrainerBase):
    """Train one K-head reward model on multi-objective preference pairs.

    Pass a config and, optionally, a sequence-classification model (``num_labels`` = K), its tokenizer
    and datasets already in memory. ``train()`` trains (or resumes) and saves ``output_dir/final``;
    ``evaluate()`` gives held-out pair accuracy per objective with a Wilson 95 % interval and the one-sided
    95 % lower bound (above 0.5: better than chance).
    """

    tracker_project = "moalign-rm"

    def __init__(self, config: RewardModelConfig, *, model: torch.nn.Module | None = None,
                 processing_class: Any = None, train_dataset: PreferenceDataset | None = None,
                 eval_dataset: PreferenceDataset | None = None):
        super().__init__(config)
        set_seed(config.seed)
        self.train_dataset, self.eval_dataset = self.preference_datasets(train_dataset, eval_dataset)
        self.objectives = tuple(self.train_dataset.objectives)
        self.tokenizer = processing_class if processing_class is not None else load_tokenizer(config.model)
        if model is None:
            pad = padding_id(self.tokenizer)
            model = load_reward_backbone(config.model, self.objectives, dtype=config.dtype, pad_token_id=pad)
        if model.config.num_labels != len(self.objectives):
            raise ValueError(f"the model has {model.config.num_labels} output(s) for {len(self.objectives)} objectives")
        if config.use_lora:
            model = add_lora(model, LoraSpec(config.lora_r, config.lora_alpha, config.lora_dropout,
                                             config.lora_target_modules), task_type="SEQ_CLS")
        self.sampler = StepSampler(len(self.train_dataset), config.per_device_batch_size, config.gradient_accumulation_steps,
                                   self.accelerator.num_processes, config.seed, config.leftover)
        self.total_steps = config.max_steps or max(1, math.ceil(config.num_epochs * self.sampler.steps_per_epoch))
        optimizer, self.scheduler = self.build_optimizer(model, self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.objective_step = MultiObjectiveStep(self.accelerator, self.model, self.params, get_rule("linear"),
                                                 self.objectives)

    def make_batch(self, dataset: PreferenceDataset, index: list[int]) -> dict[str, torch.Tensor]:
        """Rendered conversations ``[all preferred-or-A responses, all B responses]`` and the pairs' labels."""
        pairs = [dataset[i] for i in index]
        prompts = [p.prompt for p in pairs] * 2
        responses = [p.response_a for p in pairs] + [p.response_b for p in pairs]
        batch = encode_conversations(self.tokenizer, prompts, responses, self.config.max_length)
        batch["labels"], batch["label_mask"] = pair_labels(pairs, self.objectives)
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def objective_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveLosses:
        """Per-objective Bradley-Terry losses of one batch: ``-log sigmoid(s_k (r_k(A) - r_k(B)))``."""
        with self.accelerator.autocast():
            rewards = sequence_rewards(model, batch).float()
        n = rewards.shape[0] // 2
        return objective_losses(rewards[:n] - rewards[n:], batch["labels"], batch["label_mask"], beta=1.0)

    def training_step(self, step: int) -> dict[str, Any]:
        """One optimizer step; returns the metrics to log."""
        self.model.train()
        rank = self.accelerator.process_index
        micros = [self.make_batch(self.train_dataset, self.sampler.indices(step, m, rank))
                  for m in range(self.config.gradient_accumulation_steps)]
        counts = self.objective_step.reduce(sum(label_counts(b["labels"], b["label_mask"]).double().cpu() for b in micros))
        if not counts.any():
            self.optimizer.zero_grad(set_to_none=True)
            return {"skipped": "no objective has a strictly labelled pair in this step"}
        result = self.objective_step.run(step, micros, counts, self.objective_losses)
        losses, accuracy, _ = result.totals.means(counts)
        metrics: dict[str, Any] = self.clip_and_step(self.params, step)
        for k, name in enumerate(self.objectives):
            metrics.update({f"{name}/loss": float(losses[k]), f"{name}/accuracy": float(accuracy[k]),
                            f"{name}/pairs": int(counts[k])})
        return metrics

    @torch.no_grad()
    def evaluate(self, dataset: PreferenceDataset | None = None) -> dict[str, dict[str, float]]:
        """Pair accuracy per objective on held-out pairs: estimate, Wilson 95 % interval, one-sided 95 % lower bound;
        each process scores its share of the pairs."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        self.model.eval()
        totals = StepTotals(len(self.objectives))
        batches = list(self.eval_batches(len(dataset), self.config.per_device_batch_size * 2))
        for index, counted in tqdm(batches, desc="eval", leave=False, disable=not self.accelerator.is_main_process):
            out = self.objective_losses(self.model, self.make_batch(dataset, index))
            if counted:
                totals.add(out)
        totals.reduce(self.objective_step.reduce)
        losses, accuracy, margin = totals.means()
        report = {}
        for k, name in enumerate(self.objectives):
            n = int(totals.counts[k])
            entry = {"accuracy": float(accuracy[k]), "loss": float(losses[k]), "margin": float(margin[k]), "pairs": n}
            if n:
                correct = round(float(accuracy[k]) * n)
                interval = wilson_interval(correct, n)
                entry.update({"low": interval.low, "high": interval.high,
                              "lower_bound_one_sided": wilson_interval(correct, n, level=0.90).low})
            report[name] = entry
        return report

    def checkpoint_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("sampler") not in (None, self.sampler.state_dict()):
            raise CheckpointError(f"the checkpoint drew its pairs as {state['sampler']}, this run as "
                                  f"{self.sampler.state_dict()}: the data or batch layout changed")

    def final_model(self, full_state: dict[str, torch.Tensor] | None = None) -> tuple[torch.nn.Module, None]:
        """The reward model with any LoRA adapter merged in, so plain transformers loads it. Under FSDP2 the
        trained model holds only shards, so the model is rebuilt whole on the CPU from the gathered weights, in
        their dtype."""
        from transformers import AutoModelForSequenceClassification

        model = self.accelerator.unwrap_model(self.model)
        if full_state is not None:
            structure = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
            whole = AutoModelForSequenceClassification.from_config(structure, dtype=next(iter(full_state.values())).dtype)
            if hasattr(model, "peft_config"):
                whole = add_lora(whole, LoraSpec(self.config.lora_r, self.config.lora_alpha, self.config.lora_dropout,
                                                 self.config.lora_target_modules), task_type="SEQ_CLS")
            whole.load_state_dict(full_state)
            model = whole
        return (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model), None

    progress_label = "rm"

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {f"{n[:8]}_acc": f"{metrics[f'{n}/accuracy']:.2f}" for n in self.objectives}

    def run_summary(self) -> dict[str, Any]:
        return {"train_pairs": len(self.train_dataset)}
