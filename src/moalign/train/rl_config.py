"""Configuration of multi-objective RL (:class:`moalign.train.MultiObjectiveRLTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.config import ConfigError
from moalign.train.config_base import TrainingConfig

RL_METHODS = ("pama", "morlhf", "tchebycheff")
PAMA_GRANULARITIES = ("token", "sequence", "batch_mean")


@dataclass
class MultiObjectiveRLConfig(TrainingConfig):
    """Multi-objective PPO: K rewards, one value head per objective (or a group baseline), one combination rule.

    The model, optimizer, logging and saving settings are those of
    :class:`~moalign.train.config_base.TrainingConfig`. ``per_device_batch_size`` is the number of prompts
    each process draws per step; each is sampled ``num_generations`` times. ``max_steps`` counts rollout steps;
    each runs ``ppo_epochs`` passes over ``num_mini_batches`` mini-batches (one optimizer step each), every
    mini-batch split into ``gradient_accumulation_steps`` micro-batches.

    Prompts:
        task: ``bundled`` for moalign's bundled prompts, or leave unset and give ``prompt_files``.
        prompt_files: prompt files; ``prompt_adapter: prompts`` reads prompt-only files and AlpacaEval
            instructions (field ``prompt`` or ``instruction``); a preference adapter name (``hh_rlhf``,
            ``native``, ...) takes the distinct prompts of preference files.
        max_prompts: use at most this many prompts; eval_prompts: how many are held out (seeded) to measure
            each objective's mean reward during training.
        max_prompt_length: prompts keep their last tokens up to this length.

    Rewards:
        rewards: one per objective, ``NAME`` (a built-in scorer such as ``sentiment`` or ``length_clip``) or
            ``NAME=rm:PATH[:HEAD]`` (a sequence-classification reward model's head).
        whiten_rewards: whiten each objective's reward with its running mean and variance before use.

    Rollouts:
        max_new_tokens, temperature, top_p, top_k: sampling; num_generations: samples per prompt. ``top_k`` 0
            (TRL's default) samples from the whole distribution at ``temperature``, the one the log-probs of the
            PPO ratio and the KL describe (they divide the logits by ``temperature`` too); a model's own
            generation config (transformers' default top_k is 50) is never used.
        rollout_engine: ``generate`` (transformers' ``generate`` on the policy) or ``decode`` (moalign's decoding
            loop: each sample its own generator); rollout_decoding: how ``decode`` runs its steps, ``dynamic``,
            ``static`` or ``cuda_graph`` (each chunk's steps replayed as a CUDA graph: a small policy on one GPU).

    Advantages and the KL penalty:
        advantage: ``gae`` (a value head per objective on the policy's final hidden state, detached, so the
            heads never move the policy; GAE with ``gamma`` and ``lam``) or ``group`` (critic-free: each
            objective's sequence reward minus its group's mean over the ``num_generations`` samples of a
            prompt, divided by the group's standard deviation).
        kl_coef, kl_estimator, target_kl, kl_horizon: the per-token penalty ``-kl_coef * KL`` added to every
            objective's reward (the reference is the base model, adapters disabled, eval mode; a frozen copy
            without LoRA); ``target_kl`` set adapts the coefficient (Ziegler et al.).
        kl_penalty: ``reward`` (as above; PPO/RLHF convention, PAMA's A-P3) or ``loss`` (GRPO's convention:
            ``kl_coef * KL`` added to the loss instead, usually with ``kl_estimator: k3``). With ``loss``, a
            critic-free step with one update needs no separate pass for the rollout policy's log-probs.
        whiten_advantages: whiten each objective's advantages over the batch before combining them (the
            scales of the objectives differ; PAMA's min compares them).
        vf_coef, cliprange, cliprange_value: value-loss weight and the PPO clip ranges.

    The combination:
        rule: ``pama`` (Noon PPO on PAMA's closed-form combined advantage), ``morlhf`` (PPO on the
            preference-weighted sum of the objectives' advantages: linear scalarisation of the rewards),
            ``tchebycheff`` (smooth Tchebycheff by online mirror descent, HoE's router objective: PPO on the sum of
            the advantages weighted by ``w ∘ λ``, ``w`` updated after each batch; ``rule_options``: ``ideal``, one
            value per objective, and ``step_size``), or a gradient rule of ``moalign.moo`` (``mgda_ub``, ``mgda``, ``pcgrad``, ...) on the K per-objective PPO
            losses.
        pama_granularity: where PAMA takes its minimum: ``token`` (default), ``sequence`` (each sequence's
            mean clipped advantage) or ``batch_mean`` (one number for the batch, the verl fork's reading).
        preference: weights per objective for ``morlhf`` and preference-aware gradient rules.
        rule_options: keyword options of a gradient rule.
    """

    task: str | None = None
    prompt_files: list[str] = field(default_factory=list)
    prompt_adapter: str = "prompts"
    max_prompts: int | None = None
    eval_prompts: int = 32
    max_prompt_length: int = 256

    rewards: list[str] = field(default_factory=lambda: ["sentiment", "length_clip"])
    whiten_rewards: bool = False

    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_generations: int = 1
    rollout_engine: str = "generate"
    rollout_decoding: str = "dynamic"

    advantage: str = "gae"
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    kl_estimator: str = "k1"
    target_kl: float | None = None
    kl_horizon: int = 10000
    kl_penalty: str = "reward"
    whiten_advantages: bool = True
    vf_coef: float = 0.1
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    ppo_epochs: int = 1
    num_mini_batches: int = 1

    rule: str = "pama"
    pama_granularity: str = "token"
    preference: list[float] | None = None
    rule_options: dict = field(default_factory=dict)

    learning_rate: float = 1e-5
    per_device_batch_size: int = 16
    max_steps: int | None = 100
    eval_before: bool = True
    output_dir: str = "runs/rl"

    def __post_init__(self) -> None:
        from moalign.data import DataError, check_prompt_adapter
        from moalign.models.static_decoding import DECODING_MODES
        from moalign.moo import ADVANTAGE_RULES, RULES, get_rule
        from moalign.objectives import parse_reward_spec
        from moalign.train.ppo import KL_ESTIMATORS

        super().__post_init__()
        if not self.rewards:
            raise ConfigError("rewards is empty: name at least one reward (one per objective)")
        for spec in self.rewards:
            parse_reward_spec(spec)
        if self.rule not in RL_METHODS and self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}; RL rules are {list(RL_METHODS)} and the gradient rules "
                              f"{sorted(RULES)}")
        if self.rule in RULES:
            try:
                get_rule(self.rule, **self.rule_options)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"rule_options {self.rule_options} for rule {self.rule!r}: {exc}") from None
        elif self.rule == "tchebycheff":
            from moalign.moo.tchebycheff import OnlineTchebycheff

            if "ideal" not in self.rule_options:
                raise ConfigError("rule tchebycheff needs rule_options.ideal: the ideal point, one value per objective")
            try:
                OnlineTchebycheff(self.preference or [1.0] * len(self.rewards), **self.rule_options)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"rule_options {self.rule_options} for rule tchebycheff: {exc}") from None
        elif self.rule_options and self.rule not in ADVANTAGE_RULES:
            raise ConfigError(f"rule {self.rule!r} takes no rule_options")
        if self.pama_granularity not in PAMA_GRANULARITIES:
            raise ConfigError(f"unknown pama_granularity {self.pama_granularity!r}; choose one of {PAMA_GRANULARITIES}")
        if self.rollout_engine not in ("generate", "decode"):
            raise ConfigError(f"unknown rollout_engine {self.rollout_engine!r}; use generate or decode")
        if self.rollout_decoding not in DECODING_MODES:
            raise ConfigError(f"unknown rollout_decoding {self.rollout_decoding!r}; choose one of {DECODING_MODES}")
        if self.rollout_decoding != "dynamic" and self.rollout_engine != "decode":
            raise ConfigError("rollout_decoding applies to rollout_engine: decode (generate keeps its own cache)")
        if self.advantage not in ("gae", "group"):
            raise ConfigError(f"unknown advantage {self.advantage!r}; use gae or group")
        if self.advantage == "group" and self.num_generations < 2:
            raise ConfigError("advantage: group needs num_generations of at least 2 (samples per prompt)")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(f"unknown kl_estimator {self.kl_estimator!r}; choose one of {KL_ESTIMATORS}")
        if self.kl_penalty not in ("reward", "loss"):
            raise ConfigError(f"unknown kl_penalty {self.kl_penalty!r}; use reward or loss")
        if self.task not in (None, "bundled"):
            raise ConfigError(f"unknown task {self.task!r}; RL prompts come from task: bundled or prompt_files")
        if self.task is None and not self.prompt_files:
            raise ConfigError("no prompts: set prompt_files (or task: bundled)")
        try:
            check_prompt_adapter(self.prompt_adapter, "prompt_adapter")
        except DataError as error:
            raise ConfigError(str(error)) from None
        for name in ("max_new_tokens", "num_generations", "ppo_epochs", "num_mini_batches", "max_prompt_length",
                     "kl_horizon"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.per_device_batch_size * self.num_generations % (self.num_mini_batches * self.gradient_accumulation_steps):
            raise ConfigError(f"per_device_batch_size x num_generations ({self.per_device_batch_size * self.num_generations}) "
                              f"must split into num_mini_batches x gradient_accumulation_steps "
                              f"({self.num_mini_batches * self.gradient_accumulation_steps}) equal parts")
        if self.eval_prompts < 0 or (self.max_prompts is not None and self.max_prompts < 1):
            raise ConfigError("eval_prompts must be 0 or more and max_prompts at least 1")
        for name in ("kl_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ConfigError(f"target_kl must be positive (or unset for a fixed coefficient), got {self.target_kl}")
        if not 0 < self.cliprange < 1 or self.cliprange_value <= 0:
            raise ConfigError("cliprange must be in (0, 1) and cliprange_value positive")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ConfigError("temperature must be 0 (greedy) or more, top_p in (0, 1] and top_k 0 (off) or more")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ConfigError("gamma and lam must be in [0, 1]")
        if self.preference is not None and len(self.preference) != len(self.rewards):
            raise ConfigError(f"preference has {len(self.preference)} weight(s) for {len(self.rewards)} rewards")
