"""Configuration of multi-objective DPO (:class:`moalign.train.MultiObjectiveDPOTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.config import ConfigError
from moalign.train.config_base import PreferenceDataConfig


@dataclass
class MultiObjectiveDPOConfig(PreferenceDataConfig):
    """Multi-objective DPO: one policy, K per-objective DPO losses, one combination rule.

    The model, training, logging and data settings are those of
    :class:`~moalign.train.config_base.PreferenceDataConfig`; DPO adds:

    The reference:
        reference: ``auto`` (base model with adapters disabled under LoRA, else ``precomputed``),
            ``adapter_disabled``, ``copy`` (a frozen copy), or ``precomputed`` (reference log-probs of
            every pair computed once before training and cached in ``output_dir``).

    The objective and its combination:
        rule: weight rule from ``moalign.moo.RULES``; default ``mgda_decoupled``. Every rule updates along
            ``sum_k w_k grad L_k`` with ``L_k`` objective k's mean over the whole optimizer step; the rule
            is called once per step. ``mgda_ub`` reads the Gram of gradients with respect to the policy's
            final hidden states. Advantage rules (``pama``) belong to ``moalign train rl``.
        rule_options: keyword options of the rule (e.g. ``{step_size: 0.01}`` for ``group_dro``).
        preference: weights per objective (by position) for preference-aware rules such as ``linear``.
        gram_every: recompute per-objective gradients and weights every N steps and reuse the weights
            in between (1 = exact every step); only for rules that need the Gram.
        gradient_method: how exact per-objective geometry is computed for Gram rules: ``per_pair`` (one
            backward pass with hooks giving each pair's gradient; LoRA, one process), ``autograd`` (K
            vector-Jacobian products of the shared graph; any model, any number of processes; under FSDP2
            one backward pass per objective through the sharded model), or ``auto`` (``per_pair`` when it
            applies).
        beta: DPO temperature (0.5 in the MGDA-Decoupled paper).
        loss_type: ``sigmoid`` (DPO) or ``ipo``.
    """

    reference: str = "auto"
    rule: str = "mgda_decoupled"
    rule_options: dict = field(default_factory=dict)
    preference: list[float] | None = None
    gram_every: int = 1
    gradient_method: str = "auto"
    beta: float = 0.5
    loss_type: str = "sigmoid"
    output_dir: str = "runs/dpo"

    def __post_init__(self) -> None:
        from moalign.moo import ADVANTAGE_RULES, RULES, get_rule
        from moalign.train.losses import LOSS_TYPES

        super().__post_init__()
        if self.rule in ADVANTAGE_RULES:
            raise ConfigError(f"rule {self.rule!r} combines per-token RL advantages, which DPO does not have: "
                              f"use it with `moalign train rl`; DPO rules are {sorted(RULES)}")
        if self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}; rules are {sorted(RULES)}")
        try:
            get_rule(self.rule, **self.rule_options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"rule_options {self.rule_options} for rule {self.rule!r}: {exc}") from None
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"unknown loss_type {self.loss_type!r}; choose one of {LOSS_TYPES}")
        if self.reference not in ("auto", "adapter_disabled", "copy", "precomputed"):
            raise ConfigError(f"unknown reference {self.reference!r}; use auto, adapter_disabled, copy or precomputed")
        if self.gradient_method not in ("auto", "per_pair", "autograd"):
            raise ConfigError(f"unknown gradient_method {self.gradient_method!r}; use auto, per_pair or autograd")
        if self.reference == "adapter_disabled" and not self.use_lora:
            raise ConfigError("reference 'adapter_disabled' needs use_lora: true")
        if self.gram_every < 1:
            raise ConfigError(f"gram_every must be at least 1, got {self.gram_every}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")

    @property
    def reference_mode(self) -> str:
        if self.reference != "auto":
            return self.reference
        return "adapter_disabled" if self.use_lora else "precomputed"
