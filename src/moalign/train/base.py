"""What every moalign trainer shares: accelerate set-up, the output folder, the training loop, checkpoints,
resume, logs, final save.

A trainer (DPO, RL, reward model) subclasses :class:`TrainerBase`, builds ``self.model``,
``self.optimizer``, ``self.scheduler`` and ``self.tokenizer``, and implements one optimizer step
(``training_step``) and its held-out evaluation (``evaluate``); the base runs the loop around them, so
every trainer logs, evaluates, checkpoints and resumes the same way. It keeps the rules that make a run
safe to kill and restart:

* ``output_dir`` is checked writable before any model is loaded, and one that already holds a run is
  refused when training starts unless the run resumes it or overwrites it;
* checkpoints (``checkpoint-<step>``, atomic, safetensors + JSON) carry the config, and a resume
  refuses a config whose result-changing settings differ, naming them;
* only checkpoints named ``checkpoint-<step>`` are rotated; any other folder is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from moalign.config import ConfigError, config_to_dict
from moalign.data import DataError, PreferenceDataset, load_training_data
from moalign.models import portable_model_name, resolve_model_path
from moalign.storage import check_writable, write_json_atomic, write_text_atomic
from moalign.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from moalign.train.sharded import register_shards

logger = logging.getLogger(__name__)

#: Config keys that may differ between a run and its resumption: they change what is logged or saved, not
#: the weights. Any other difference is refused.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "logging_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "eval_before",
    "resume_from", "overwrite_output_dir",
})
RUN_FILES = ("final", "log.jsonl")


def resolve_mixed_precision(mixed_precision: str | None) -> str:
    """The config's precision, else the one ``accelerate launch`` (or ``accelerate config``) chose, else ``no``."""
    return mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")


def reset_accelerate_precision(mixed_precision: str) -> None:
    """accelerate keeps one process-wide ``AcceleratorState`` and refuses a second ``Accelerator`` with another
    precision, so a notebook could not train in bf16 after fp32. Forget that state (not the distributed
    ``PartialState``, which stays) when the precision changes."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def holds_run(output_dir: Path) -> bool:
    """Whether ``output_dir`` has a checkpoint, a final model or a training log."""
    return bool(list_checkpoints(output_dir)) or any((output_dir / name).exists() for name in RUN_FILES)


def check_output_dir(output_dir: Path) -> None:
    """``output_dir`` exists (created) and is writable, so a run cannot train for hours and then fail to save."""
    try:
        check_writable(output_dir)
    except OSError as exc:
        raise ConfigError(f"output_dir {output_dir} is not writable: {exc.strerror or exc}") from None


def claim_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, remove: bool = True) -> None:
    """Refuse an ``output_dir`` that holds a run unless resuming it or overwriting it; when overwriting, its
    run files are removed (by the process with ``remove``: one process of a distributed run)."""
    if not holds_run(output_dir) or resume:
        return
    if not overwrite:
        raise ConfigError(f"output_dir {output_dir} already holds a run; pass --resume to continue it or "
                          "--overwrite to replace it (or choose another output_dir)")
    if not remove:
        return
    for _, path in list_checkpoints(output_dir):
        shutil.rmtree(path)
    for name in RUN_FILES:
        target = output_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Config keys whose values differ and that change the result of training."""
    keys = (set(saved) | set(current)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def truncate_log(path: Path, step: int) -> None:
    """Drop what a killed run logged after its checkpoint at ``step`` (and a last line cut off mid-write), so the
    log of a resumed run reads as one uninterrupted run rather than repeating the steps it redoes."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line + "\n")
    write_text_atomic(path, "".join(kept))


def evaluation_share(n: int, rank: int, world: int) -> tuple[range, int]:
    """The items of an ``n``-item evaluation that process ``rank`` of ``world`` takes (a contiguous block, so
    results gathered in rank order are the items in order) and the block size every process pads to."""
    per = -(-n // world)
    return range(min(n, rank * per), min(n, (rank + 1) * per)), per


class TrainerBase(ABC):
    """Accelerator, output folder, the training loop, checkpoints, resume, JSONL + tracker logs and the final save.

    Subclasses set ``tracker_project`` and ``progress_label``, build ``model``, ``optimizer``, ``scheduler``,
    ``tokenizer``, ``objectives`` and ``total_steps``, implement :meth:`training_step` and :meth:`evaluate`, and
    may add their own state to checkpoints through :meth:`checkpoint_state` / :meth:`load_checkpoint_state`.
    """

    tracker_project = "moalign"

    def __init__(self, config: Any):
        self.config = config
        self.output_dir = Path(config.output_dir)
        check_output_dir(self.output_dir)
        mixed_precision = resolve_mixed_precision(config.mixed_precision)
        reset_accelerate_precision(mixed_precision)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=1,  # accumulation is the trainers' own: per-objective statistics need it
            mixed_precision=mixed_precision,
            log_with=config.report_to or None,
            project_dir=str(self.output_dir),
        )
        self.log_path = self.output_dir / "log.jsonl"

    # ---- shared set-up ------------------------------------------------------------------------------

    def task_data(self) -> Any:
        """The built-in task the config names (``task: bundled | synthetic``) as a ``PreferenceDataset``, or None."""
        task = getattr(self.config, "task", None)
        if task is None:
            return None
        from moalign.tasks import (
            BundledTaskConfig,
            build_synthetic_task,
            load_or_build_bundled_task,
        )

        task_config = BundledTaskConfig(seed=self.config.seed)
        if task == "synthetic":
            return build_synthetic_task(task_config)
        return load_or_build_bundled_task(resolve_model_path(self.config.model), task_config)[0]

    def preference_datasets(self, train_dataset: PreferenceDataset | None, eval_dataset: PreferenceDataset | None
                            ) -> tuple[PreferenceDataset, PreferenceDataset | None]:
        """The pairs to train and evaluate on: the datasets given, else those the config names (its task or
        files; an evaluation set given alone is kept). Data without objectives is refused."""
        if train_dataset is None:
            train_dataset, loaded_eval = load_training_data(self.config, self.task_data())
            eval_dataset = eval_dataset if eval_dataset is not None else loaded_eval
        if not train_dataset.objectives:
            raise DataError("the training data has no objectives (K = 0)")
        return train_dataset, eval_dataset

    def build_optimizer(self, model: torch.nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW over the trainable parameters and the config's schedule over ``total_steps`` optimizer steps.

        The scheduler stays unprepared: accelerate's wrapper steps it once per process per call, and
        ``total_steps`` already counts optimizer steps."""
        optimizer = self.build_adamw(model)
        return optimizer, self.build_scheduler(optimizer, total_steps)

    def build_adamw(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """AdamW over ``model``'s trainable parameters with the config's learning rate and weight decay."""
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                 lr=self.config.learning_rate, weight_decay=self.config.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The config's learning-rate schedule over ``total_steps`` optimizer steps, for every param group."""
        from transformers import get_scheduler

        c = self.config
        return get_scheduler(c.lr_scheduler, optimizer, num_warmup_steps=int(c.warmup_ratio * total_steps),
                             num_training_steps=total_steps)

    def clip_and_step(self, params: list[torch.Tensor], step: int) -> dict[str, float]:
        """Clip the gradient of ``params``, step the optimizer and the schedule, clear the gradients; return
        the learning rate and the norm before clipping. A non-finite gradient stops the run naming the step."""
        from moalign.train.gradients import NonFiniteError

        grad_norm = self.accelerator.clip_grad_norm_(params, self.config.max_grad_norm)
        if not torch.isfinite(torch.as_tensor(grad_norm)):
            raise NonFiniteError(f"step {step}: the combined gradient is not finite")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm)}

    # ---- evaluation, shared out over the processes ----------------------------------------------------

    def eval_share(self, n: int) -> tuple[range, int]:
        """This process's block of an ``n``-item evaluation and the block size every process pads to."""
        return evaluation_share(n, self.accelerator.process_index, self.accelerator.num_processes)

    def eval_batches(self, n: int, size: int) -> Iterator[tuple[list[int], bool]]:
        """``(indices, counted)`` of this process's evaluation batches of at most ``size`` items. Every process
        runs as many batches as the fullest one (a sharded forward is a collective); the extra ones repeat item 0
        and are not ``counted``."""
        share, per = self.eval_share(n)
        for start in range(0, per, size):
            block = list(share[start:start + size])
            yield (block, True) if block else ([0], False)

    # ---- hooks for subclasses -----------------------------------------------------------------------

    progress_label = "train"

    @abstractmethod
    def training_step(self, step: int) -> dict[str, Any]:
        """One optimizer step; its metrics (with ``skipped``: why, when the step changed nothing)."""

    @abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """Held-out figures per objective (every process takes part)."""

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {}

    def run_summary(self) -> dict[str, Any]:
        """Trainer-specific entries of the summary ``train`` returns and saves (the rule, the data size)."""
        return {}

    def checkpoint_model(self) -> torch.nn.Module:
        """The module whose trainable parameters a checkpoint holds (the model; RL adds its value heads)."""
        return self.accelerator.unwrap_model(self.model)

    def checkpoint_state(self) -> dict[str, Any]:
        """JSON-serialisable trainer state beyond model, optimizer, scheduler and RNG."""
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` saved."""

    # ---- checkpoints --------------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> Path:
        """Write ``checkpoint-<step>`` (every process takes part; the main one writes) and rotate old ones."""
        self.accelerator.wait_for_everyone()
        path = self.output_dir / f"checkpoint-{step}"
        extra = {"config": config_to_dict(self.config), **self.checkpoint_state()}
        save_checkpoint(path, model=self.checkpoint_model(), optimizer=self.optimizer,
                        scheduler=self.scheduler, step=step, write=self.accelerator.is_main_process, extra=extra)
        if self.accelerator.is_main_process:
            kept = list_checkpoints(self.output_dir)
            for _, old in kept[: max(0, len(kept) - self.config.save_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def start_step(self, resume_from: str | Path | bool | None, total_steps: int) -> int:
        """Claim the output folder and, when resuming, restore the checkpoint; return the step to start from."""
        claim_output_dir(self.output_dir, resume=bool(resume_from), overwrite=self.config.overwrite_output_dir,
                         remove=self.accelerator.is_main_process)
        self.accelerator.wait_for_everyone()
        return self.resume(resume_from, total_steps) if resume_from else 0

    def resume(self, resume_from: str | Path | bool, total_steps: int) -> int:
        """Restore the latest (``"latest"``) or a given checkpoint; return its step (0 when there is none yet)."""
        if resume_from in ("latest", True):
            found = list_checkpoints(self.output_dir)
            if not found:
                if holds_run(self.output_dir):
                    raise CheckpointError(f"nothing to resume in {self.output_dir}: it holds a run but no "
                                          "checkpoint-<step> (pass --overwrite to start again)")
                logger.info("no checkpoint in %s; starting from scratch", self.output_dir)
                return 0
            path = found[-1][1]
        else:
            path = Path(resume_from)
        try:
            saved = json.loads((path / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
        if int(saved.get("step", 0)) > total_steps:
            raise CheckpointError(f"checkpoint {path} is at step {saved['step']}, past this run's {total_steps} steps")
        if "config" in saved:
            changed = changed_settings(saved["config"], config_to_dict(self.config))
            if changed:
                detail = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {config_to_dict(self.config).get(k)!r}" for k in changed)
                raise ConfigError(f"checkpoint {path} was trained with other settings ({detail}); resume with the "
                                  "same settings, or start a new run in another output_dir")
        register_shards(self.model)  # so that the checkpoint's values reach the FSDP2 root's shards
        state = load_checkpoint(path, model=self.checkpoint_model(), optimizer=self.optimizer,
                                scheduler=self.scheduler)
        self.load_checkpoint_state(state)
        if self.accelerator.is_main_process:
            truncate_log(self.log_path, int(state["step"]))
        self.accelerator.wait_for_everyone()
        logger.info("resumed from %s at step %d", path, state["step"])
        return int(state["step"])

    # ---- the training loop ----------------------------------------------------------------------------

    def train(self, resume_from: str | Path | bool | None = None) -> dict[str, Any]:
        """Run ``total_steps`` training steps (resuming from ``resume_from`` or the config's), evaluating before,
        every ``eval_steps`` and after, and save the final model; return the run's summary. A step is one optimizer
        step for DPO and reward models, one rollout batch and its PPO epochs for RL."""
        c = self.config
        start = self.start_step(resume_from or c.resume_from, self.total_steps)
        self.init_trackers()
        before = self.evaluate() if start == 0 and c.eval_before else None
        if before is not None:
            self.log({"step": 0, "eval": before})
        bar = tqdm(total=self.total_steps, initial=start, desc=self.progress_label,
                   disable=not self.accelerator.is_main_process)
        started, skipped = time.time(), 0
        for step in range(start, self.total_steps):
            metrics = self.training_step(step)
            bar.update(1)
            done = step + 1
            if "skipped" in metrics:
                skipped += 1
                logger.warning("step %d skipped: %s", done, metrics["skipped"])
                self.log({"step": done, **metrics})
            else:
                bar.set_postfix(self.progress_postfix(metrics))
                if c.logging_steps and (done % c.logging_steps == 0 or done == self.total_steps):
                    self.log({"step": done, **metrics})
            if c.eval_steps and done % c.eval_steps == 0 and done != self.total_steps:
                self.log({"step": done, "eval": self.evaluate()})
            if c.save_steps and done % c.save_steps == 0:
                self.save_checkpoint(done)
        bar.close()
        after = self.evaluate()
        summary = {"objectives": list(self.objectives), "steps": self.total_steps, "skipped_steps": skipped,
                   "resumed_at_step": start, "processes": self.accelerator.num_processes,
                   "distributed": self.accelerator.distributed_type.value, **self.run_summary(),
                   "eval_before": before, "eval_after": after, "seconds": round(time.time() - started, 1),
                   "config": config_to_dict(c)}
        self.log({"step": self.total_steps, "eval": after})
        self.save_final(self.tokenizer, summary)
        self.accelerator.end_training()
        return summary

    # ---- logs and the final model -------------------------------------------------------------------

    def init_trackers(self) -> None:
        if self.config.report_to:
            self.accelerator.init_trackers(self.tracker_project,
                                           config={k: str(v) for k, v in config_to_dict(self.config).items()})

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (which has a ``step``) to ``log.jsonl`` and send its numbers to the trackers."""
        if not self.accelerator.is_main_process:
            return
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        flat = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self.config.report_to and flat:
            self.accelerator.log(flat, step=record["step"])

    def final_model(self, full_state: dict[str, torch.Tensor] | None = None
                    ) -> tuple[torch.nn.Module, dict[str, torch.Tensor] | None]:
        """What ``save_final`` writes with ``save_pretrained``: the trained model (its adapter under LoRA) and the
        state dict to write, ``full_state`` (the gathered weights under FSDP2, whose model holds only shards)
        or None for the model's own."""
        return self.accelerator.unwrap_model(self.model), full_state

    def save_final(self, tokenizer: Any, summary: dict[str, Any]) -> Path:
        """``output_dir/final``: ``save_pretrained`` of the adapter (or model) and tokenizer, plus a summary."""
        self.accelerator.wait_for_everyone()
        final = self.output_dir / "final"
        # Under FSDP2 the full weights are gathered (every process takes part) before the main one writes.
        state_dict = self.accelerator.get_state_dict(self.model) if self.accelerator.is_fsdp2 else None
        if self.accelerator.is_main_process:
            model, state_dict = self.final_model(state_dict)
            model.save_pretrained(final, state_dict=state_dict)
            tokenizer.save_pretrained(final)
            base = portable_model_name(self.config.model)
            adapter_config = final / "adapter_config.json"
            if adapter_config.exists():  # PEFT records the local path it loaded; record the portable name
                recorded = json.loads(adapter_config.read_text())
                write_json_atomic(adapter_config, {**recorded, "base_model_name_or_path": base})
            write_json_atomic(final / "moalign_training.json",
                              {**summary, "base_model": base, "base_model_local": resolve_model_path(self.config.model)})
        # Every process returns once the folder is written and every collective is done, so the process group
        # that end_training destroys next has no work in flight (a gloo group torn down mid-send aborts).
        self.accelerator.wait_for_everyone()
        return final
