"""What every trainer config shares: the model and its adapter, the optimizer and its schedule, logging and
saving (:class:`TrainingConfig`), and, for trainers that learn from preference pairs, where the pairs come
from (:class:`PreferenceDataConfig`). Each method's config (DPO, reward model, RL) extends one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from moalign.config import ConfigError


@dataclass
class TrainingConfig:
    """Settings every moalign trainer has.

    The model:
        model: Hub name, local path, or ``smollm2`` / ``tiny``.
        dtype: ``auto`` (bf16 on a capable GPU, else fp32), ``float32``, ``bfloat16``.
        use_lora: train a LoRA adapter (``True``) or all weights (``False``).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: the adapter (PEFT ``LoraConfig``).

    Training:
        learning_rate, weight_decay, warmup_ratio, lr_scheduler, max_grad_norm: AdamW and its schedule.
        per_device_batch_size, gradient_accumulation_steps, num_epochs, max_steps: how much to train;
            ``max_steps`` overrides ``num_epochs`` when set.
        mixed_precision: ``no``, ``fp16`` or ``bf16``; unset, the accelerate config's choice (``no`` without one).
        seed: seeds model init, data order and sampling; the same seed gives the same run.

    Logging and saving:
        output_dir: where checkpoints, logs and the final model go. One that already holds a run is refused
            unless ``resume_from`` or ``overwrite_output_dir`` is set.
        resume_from: ``latest`` (the newest ``checkpoint-<step>`` in ``output_dir``) or a checkpoint path;
            settings that change the result must equal the checkpoint's.
        overwrite_output_dir: remove the run in ``output_dir`` (checkpoints, final model, log) and start again.
        logging_steps, eval_steps, save_steps: intervals in optimizer steps (0 = never; eval and save
            always happen at the end).
        eval_before: also evaluate before the first step (skip it when comparing runs from one start).
        save_total_limit: keep only this many checkpoints (oldest deleted first).
        report_to: accelerate trackers, e.g. ``[tensorboard]`` or ``[wandb]``; a JSONL log is always written.
    """

    model: str = "smollm2"
    dtype: str = "auto"
    use_lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: str | list[str] = "all-linear"

    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int | None = None
    mixed_precision: str | None = None
    seed: int = 0

    output_dir: str = "runs/train"
    resume_from: str | None = None
    overwrite_output_dir: bool = False
    logging_steps: int = 10
    eval_steps: int = 0
    save_steps: int = 0
    save_total_limit: int = 2
    eval_before: bool = True
    report_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, str) and re.fullmatch(r"[\w.]+", self.lora_target_modules) \
                and self.lora_target_modules != "all-linear":
            self.lora_target_modules = [self.lora_target_modules]  # one module name, not a PEFT regex
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ConfigError(f"unknown mixed_precision {self.mixed_precision!r}; use no, fp16 or bf16")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1 (or unset to train num_epochs), got {self.max_steps}")
        for name in ("num_epochs", "learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("save_total_limit", "lora_r", "per_device_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("logging_steps", "eval_steps", "save_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (never) or positive, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.resume_from is not None and self.overwrite_output_dir:
            raise ConfigError("resume_from and overwrite_output_dir exclude each other")


@dataclass
class PreferenceDataConfig(TrainingConfig):
    """A trainer that learns from multi-objective preference pairs (DPO, reward models).

    The data:
        task: ``bundled`` or ``synthetic`` to train on moalign's bundled task instead of files.
        train_files: preference files or datasets (see ``moalign.data.load_preference_data``).
        adapter: their format (``native``, ``hh_rlhf``, ``pku_saferlhf``, ``ultrafeedback``, ``helpsteer2``).
        file_objectives: for one-objective formats (HH-RLHF), the objective each file labels, in order.
        objectives: which objectives to train on, in order (default: all in the data).
        eval_files: held-out files; when empty, ``eval_fraction`` of the pairs is held out (seeded).
        max_train_pairs: use at most this many training pairs (after the split).
        max_length, max_prompt_length: token limits of prompt + response and of the prompt.
        drop_invalid: skip bad rows (and report how many) instead of stopping.
        leftover: the last partial optimizer step of an epoch is completed with pairs from the start of
            the epoch (``wrap``, default) or skipped (``drop``); see ``moalign.data.StepSampler``.
    """

    task: str | None = None
    train_files: list[str] = field(default_factory=list)
    adapter: str = "native"
    file_objectives: list[str] | None = None
    objectives: list[str] | None = None
    eval_files: list[str] = field(default_factory=list)
    eval_fraction: float = 0.1
    max_train_pairs: int | None = None
    max_length: int = 512
    max_prompt_length: int = 256
    drop_invalid: bool = False
    leftover: str = "wrap"

    def __post_init__(self) -> None:
        from moalign.data import LEFTOVER_RULES

        super().__post_init__()
        if self.leftover not in LEFTOVER_RULES:
            raise ConfigError(f"unknown leftover {self.leftover!r}; choose one of {LEFTOVER_RULES}")
        for name in ("max_length", "max_prompt_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"max_prompt_length ({self.max_prompt_length}) must be below max_length ({self.max_length})")
        if self.objectives is not None and len(self.objectives) == 0:
            raise ConfigError("objectives is empty (K = 0): give at least one objective or leave it unset")
        if self.objectives is not None and len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"duplicate names in objectives {self.objectives}")
        if self.task not in (None, "bundled", "synthetic"):
            raise ConfigError(f"unknown task {self.task!r}; use bundled or synthetic")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
