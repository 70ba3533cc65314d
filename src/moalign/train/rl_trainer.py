"""Multi-objective PPO: PAMA (Noon PPO on a closed-form combined advantage), MORLHF, and gradient rules.

One step: draw prompts (``StepSampler``), sample responses (a ``RolloutEngine``), score them with every
objective's reward, add the same per-token KL penalty to the reference to each, and turn them into
per-objective advantages (GAE over one value head per objective, or a group baseline). Then PPO epochs
over mini-batches, each one optimizer step whose policy gradient depends on the rule:

* ``pama``: per token (or sequence, or batch mean) ``s = min_k I(A_k)`` (``moalign.moo.PAMA``), and Noon
  PPO's loss on ``s``; O(K) per token, no per-objective gradients.
* ``morlhf``: PPO on ``sum_k w_k A_k`` (linear scalarisation of the rewards).
* ``tchebycheff``: the same with weights ``w ∘ λ`` from online mirror descent (``moalign.moo.tchebycheff``),
  updated from each batch's mean rewards: smooth Tchebycheff, HoE's router objective.
* a gradient rule of ``moalign.moo`` (``mgda_ub``, ``mgda``, ``pcgrad``, ...): the K per-objective PPO losses
  handed to ``MultiObjectiveStep``, as DPO does.

Value heads read the policy's final hidden state at rollout time, detached, so they never move the policy.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedType, set_seed

from moalign.config import ConfigError
from moalign.data import StepSampler
from moalign.models import LoraSpec, add_lora, load_model, load_tokenizer, padding_id, render_prompt
from moalign.models.decoding import eos_ids
from moalign.moo import PAMA, get_rule, noon_indicator
from moalign.moo.tchebycheff import OnlineTchebycheff
from moalign.objectives import RewardError, RunningWhitening, build_rewards
from moalign.preference import normalize_preference
from moalign.stats import bootstrap_interval
from moalign.train.base import TrainerBase, evaluation_share
from moalign.train.checkpoint import CheckpointError
from moalign.train.losses import ObjectiveLosses
from moalign.train.objective_step import MultiObjectiveStep, check_distributed_geometry
from moalign.train.ppo import (KLController, gae, group_advantages, kl_penalty, masked_mean, masked_whiten,
                               noon_ppo_loss,
                               ppo_clip_loss, value_loss)
from moalign.train.rl_config import RL_METHODS, MultiObjectiveRLConfig
from moalign.train.rl_prompts import load_rl_prompts
from moalign.train.rollout import DecodeEngine, GenerateEngine, Rollout, RolloutEngine, response_forward


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, rank, ...), independent for every combination."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class MultiObjectiveRLTrainer(TrainerBase):
    """Train a policy on K rewards with PAMA, MORLHF or a gradient rule (see the module docstring).

    Pass a config and, optionally, a causal LM, its tokenizer, the reward scorers (``moalign.objectives.Scorer``,
    one per objective, overriding ``config.rewards``) and a rollout engine. ``train()`` runs (or resumes) and
    saves the policy; ``evaluate()`` gives each objective's mean reward on the held-out prompts.
    """

    tracker_project = "moalign-rl"

    def __init__(self, config: MultiObjectiveRLConfig, *, model: torch.nn.Module | None = None,
                 processing_class: Any = None, rewards: Sequence[Any] | None = None,
                 engine: RolloutEngine | None = None):
        super().__init__(config)
        kind = self.accelerator.distributed_type
        if kind == DistributedType.DEEPSPEED or (kind == DistributedType.FSDP and not self.accelerator.is_fsdp2):
            raise ConfigError("RL training runs in one process, data-parallel (DDP) or under FSDP2 "
                              f"(fsdp_version: 2); {kind.value} without FSDP2 is not supported yet")
        set_seed(config.seed)
        c = config
        prompts = load_rl_prompts(c)
        random.Random(c.seed).shuffle(prompts)
        if len(prompts) <= c.eval_prompts:
            raise ConfigError(f"{len(prompts)} prompt(s) cannot hold out eval_prompts={c.eval_prompts} and still train")
        self.eval_prompts, self.train_prompts = prompts[:c.eval_prompts], prompts[c.eval_prompts:]
        self.scorers = list(rewards) if rewards is not None else build_rewards(c.rewards, device=self.accelerator.device)
        self.objectives = tuple(s.name for s in self.scorers)
        self.preference = (torch.as_tensor(normalize_preference(c.preference, self.objectives))
                           if c.preference is not None else torch.full((len(self.objectives),), 1 / len(self.objectives),
                                                                       dtype=torch.float64))
        self.tokenizer = processing_class if processing_class is not None else load_tokenizer(c.model)
        self.pad = padding_id(self.tokenizer)
        model = model if model is not None else load_model(c.model, dtype=c.dtype)
        self.frozen_reference = None
        if c.use_lora:
            model = add_lora(model, LoraSpec(c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_target_modules))
        else:
            self.frozen_reference = copy.deepcopy(model).eval().requires_grad_(False).to(self.accelerator.device)
        hidden = model.config.get_text_config().hidden_size
        self.value_heads = torch.nn.Linear(hidden, len(self.objectives)).to(self.accelerator.device)
        torch.nn.init.zeros_(self.value_heads.weight)
        torch.nn.init.zeros_(self.value_heads.bias)

        self.sampler = StepSampler(len(self.train_prompts), c.per_device_batch_size, 1, self.accelerator.num_processes,
                                   c.seed, "wrap")
        self.total_steps = c.max_steps or max(1, math.ceil(c.num_epochs * self.sampler.steps_per_epoch))
        updates = self.total_steps * c.ppo_epochs * c.num_mini_batches
        self.model, self.optimizer = self.accelerator.prepare(model, self.build_adamw(model))
        # The value heads join the optimizer after prepare: under FSDP2 accelerate maps the optimizer's parameters
        # to the sharded model's, and the heads are not part of it (each rank keeps them whole, gradients averaged).
        self.optimizer.optimizer.add_param_group({"params": list(self.value_heads.parameters())})
        self.scheduler = self.build_scheduler(self.optimizer.optimizer, updates)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

        self.tchebycheff = (OnlineTchebycheff(self.preference.numpy(), **c.rule_options) if c.rule == "tchebycheff"
                            else None)
        if c.rule in RL_METHODS:
            self.pama = PAMA(clip_eps=c.cliprange) if c.rule == "pama" else None
            self.loss_names: tuple[str, ...] = (c.rule,)
            rule = get_rule("linear")
        else:
            self.pama = None
            self.loss_names = self.objectives
            rule = get_rule(c.rule, **c.rule_options)
            check_distributed_geometry(rule, self.accelerator, c.rule)
        self.objective_step = MultiObjectiveStep(self.accelerator, self.model, self.params, rule, self.loss_names,
                                                 preference=self.preference if c.rule not in RL_METHODS else None)
        self.kl = KLController(c.kl_coef, c.target_kl, c.kl_horizon)
        self.whitening = RunningWhitening(len(self.objectives)) if c.whiten_rewards else None
        sharded = self.accelerator.is_fsdp2 and self.accelerator.num_processes > 1
        if self.accelerator.is_fsdp2:  # FSDP2 sets itself up in the root's first forward; generation would not
            with torch.no_grad():
                self.model(input_ids=torch.tensor([[self.pad]], device=self.accelerator.device))
        self.engine = engine if engine is not None else self.default_engine(synced_gpus=sharded)
        # With the KL in the loss, no value heads and one update per rollout, the policy being updated is the
        # rollout policy: its log-probs come from the update's own forward (ratio 1, as in GRPO).
        self.rollout_policy_is_current = (c.kl_penalty == "loss" and c.advantage == "group"
                                          and c.ppo_epochs * c.num_mini_batches == 1 and c.lora_dropout == 0)
        self._diagnostics: list[dict[str, float]] = []

    # ---- rollouts ---------------------------------------------------------------------------------

    def default_engine(self, *, synced_gpus: bool) -> RolloutEngine:
        """The rollout engine when none is given, as ``config.rollout_engine`` says: transformers' ``generate`` on
        the policy, or moalign's decoding loop; ``synced_gpus`` when the policy is sharded, so every process keeps
        stepping until all are done."""
        if self.config.rollout_engine == "decode":
            return DecodeEngine(self.tokenizer, eos_ids(self.policy(), self.tokenizer), synced_gpus=synced_gpus,
                                decoding=self.config.rollout_decoding)
        return GenerateEngine(self.tokenizer, synced_gpus=synced_gpus)

    def encode(self, prompt: Any) -> list[int]:
        """The prompt's token ids as the policy sees them (chat template applied), keeping the last tokens."""
        return self.tokenizer(render_prompt(self.tokenizer, prompt), add_special_tokens=False)["input_ids"][-self.config.max_prompt_length:]

    def policy(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @contextlib.contextmanager
    def unsharded_root(self) -> Iterator[None]:
        """Under FSDP2, the root's own parameters (embeddings, head) gathered for the whole block: generation calls
        the model inside the sharded root (PEFT's generate), whose hooks would gather them at every step."""
        if not self.accelerator.is_fsdp2:
            yield
            return
        self.model.unshard()
        try:
            yield
        finally:
            self.model.reshard()

    @torch.no_grad()
    def sample(self, prompts: Sequence[Any], seed: int) -> tuple[list[list[int]], list[list[int]], list[str]]:
        """``(prompt_ids, response_ids, response_texts)`` of one sample per prompt."""
        c = self.config
        prompt_ids = [self.encode(p) for p in prompts]
        policy = self.policy().eval()
        with self.unsharded_root():
            responses = self.engine.generate(policy, prompt_ids, max_new_tokens=c.max_new_tokens,
                                             temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, seed=seed)
        texts = [t.strip() for t in self.tokenizer.batch_decode(responses, skip_special_tokens=True)]
        return prompt_ids, [r if r else [self.tokenizer.eos_token_id] for r in responses], texts

    def score(self, prompts: Sequence[Any], texts: Sequence[str], step: int | str) -> np.ndarray:
        """``(N, K)`` rewards, every source checked: an error, NaN or the wrong length stops the run naming it."""
        columns = []
        for scorer in self.scorers:
            try:
                values = np.asarray(scorer.reward(list(prompts), list(texts)), dtype=np.float64)
            except (ValueError, RuntimeError, OSError) as exc:  # RewardError is a ValueError
                raise RewardError(f"step {step}: reward {scorer.name!r}: {exc}") from exc
            if values.shape != (len(texts),):
                raise RewardError(f"step {step}: reward {scorer.name!r} returned {values.size} value(s) for {len(texts)} responses")
            columns.append(values)
        return np.stack(columns, 1)

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        if self.frozen_reference is not None:
            return response_forward(self.frozen_reference, rollout, temperature=self.config.temperature)[0]
        policy = self.policy()
        with policy.disable_adapter():
            return response_forward(policy, rollout, temperature=self.config.temperature)[0]

    @torch.no_grad()
    def make_experience(self, step: int) -> dict[str, Any]:
        """Sample, score and compute per-objective advantages for rollout step ``step``."""
        c = self.config
        rank = self.accelerator.process_index
        drawn = [self.train_prompts[i] for i in self.sampler.indices(step, 0, rank)]
        prompts = [p for p in drawn for _ in range(c.num_generations)]
        prompt_ids, response_ids, texts = self.sample(prompts, derived_seed(c.seed, step, rank))
        rollout = Rollout.build(prompt_ids, response_ids, self.pad).to(self.accelerator.device)
        mask = rollout.response_mask.float()
        old_logprobs = hidden = None
        if not self.rollout_policy_is_current:
            with self.accelerator.autocast():
                old_logprobs, hidden = response_forward(self.policy().eval(), rollout, temperature=c.temperature,
                                                         hidden=c.advantage == "gae")
            old_logprobs = old_logprobs.float()
        reference = self.reference_logprobs(rollout).float()
        scores = self.score(prompts, texts, step)
        used = scores
        if self.whitening is not None:
            self.whitening.update(self.gather_rows(scores))  # every process keeps the same statistics
            used = self.whitening(scores)
        in_reward = c.kl_penalty == "reward"
        kl = kl_penalty(old_logprobs, reference, c.kl_estimator) * mask if old_logprobs is not None else torch.zeros_like(mask)
        coef = self.kl.value if in_reward else 0.0
        rewards = torch.as_tensor(used, dtype=mask.dtype, device=mask.device)
        values = returns = None
        if c.advantage == "gae":
            hidden = hidden.detach().float()
            values = self.value_heads(hidden) * mask.unsqueeze(-1)
            token_rewards = (-coef * kl).unsqueeze(-1).repeat(1, 1, len(self.objectives))
            last = mask.sum(1).long() - 1
            token_rewards[torch.arange(len(prompts), device=mask.device), last] += rewards
            advantages, returns = gae(token_rewards, values, mask, gamma=c.gamma, lam=c.lam)
        else:
            sequence = rewards - coef * kl.sum(1, keepdim=True)
            advantages = group_advantages(sequence, c.num_generations).unsqueeze(1) * mask.unsqueeze(-1)
        if c.rule == "morlhf":
            advantages = (advantages * self.preference.to(advantages)).sum(-1, keepdim=True)
        elif self.tchebycheff is not None:
            weights = torch.as_tensor(self.tchebycheff.reward_weights())
            advantages = (advantages * weights.to(advantages)).sum(-1, keepdim=True)
            self.tchebycheff.update([self.reduce_mean(torch.tensor(scores[:, k].mean())) for k in range(scores.shape[1])])
        if c.whiten_advantages:
            advantages = masked_whiten(advantages, mask, sum_over_processes=self.sum_over_processes)
        if c.rule == "pama" and c.pama_granularity == "batch_mean":
            positive = advantages.clamp_min(0.0)
            total = self.sum_over_processes
            advantages = total((positive * mask.unsqueeze(-1)).sum((0, 1))) / total(mask.sum()).clamp_min(1)
            advantages = advantages.expand(*mask.shape, -1) * mask.unsqueeze(-1)
        sequence_kl = None if old_logprobs is None else self.reduce_mean(kl.sum(1).mean())
        lengths = mask.sum(1)
        return {"rollout": rollout, "old_logprobs": old_logprobs, "reference": reference, "advantages": advantages,
                "hidden": hidden,
                "values": values, "returns": returns, "scores": scores, "kl": sequence_kl,
                "response_length": float(lengths.mean())}

    def reduce_mean(self, value: torch.Tensor) -> float:
        return float(self.accelerator.reduce(value.detach().reshape(1).float(), "mean")) \
            if self.accelerator.num_processes > 1 else float(value)

    def sum_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value, "sum") if self.accelerator.num_processes > 1 else value

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every process's ``rows`` stacked in rank order (the same array on every process)."""
        if self.accelerator.num_processes == 1:
            return rows
        return self.accelerator.gather(torch.as_tensor(rows, device=self.accelerator.device)).cpu().numpy()

    # ---- the update --------------------------------------------------------------------------------

    def combined_advantage(self, advantages: torch.Tensor, ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """PAMA's ``s`` per token ``(B, T)`` from per-objective advantages ``(B, T, K)`` and the ratio."""
        c = self.config
        indicator = noon_indicator(advantages, ratio, c.cliprange)
        if c.pama_granularity == "sequence":
            per_sequence = (indicator * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            combination = self.pama.combine_advantages(per_sequence)
            s = combination.advantage.unsqueeze(1) * mask
        else:  # token, or batch_mean whose advantages are already the batch's per-objective means
            combination = self.pama.combine_advantages(indicator, mask=mask)
            s = combination.advantage * mask
        positive = (advantages.clamp_min(0) * mask.unsqueeze(-1)).sum((0, 1)) / mask.sum().clamp_min(1)
        self._diagnostics.append({"pama/zero_fraction": combination.diagnostics["zero_fraction"],
                                  **{f"{n}/deciding_share": float(v) for n, v in
                                     zip(self.objectives, combination.diagnostics["deciding_share"])},
                                  **{f"{n}/clipped_advantage": float(v) for n, v in zip(self.objectives, positive)}})
        return s

    def policy_losses(self, model: torch.nn.Module, micro: dict[str, Any]) -> ObjectiveLosses:
        """The micro-batch's PPO loss per entry of ``loss_names`` (one for PAMA and MORLHF, K otherwise)."""
        rollout, old, advantages = micro["rollout"], micro["old_logprobs"], micro["advantages"]
        mask = rollout.response_mask
        with self.accelerator.autocast():
            logprobs, _ = response_forward(model, rollout, temperature=self.config.temperature)
        logprobs = logprobs.float()
        if old is None:  # the rollout policy is the current one (one update per rollout, no separate pass)
            old = logprobs.detach()
        if self.pama is not None:
            ratio = (logprobs - old).exp().detach()
            results = [noon_ppo_loss(logprobs, old, self.combined_advantage(advantages, ratio, mask), mask,
                                     clip_eps=self.config.cliprange)]
        else:
            results = [ppo_clip_loss(logprobs, old, advantages[..., k], mask, clip_eps=self.config.cliprange)
                       for k in range(advantages.shape[-1])]
        self._diagnostics.append({"clipped_fraction": float(np.mean([r.clipped_fraction for r in results])),
                                  "approx_kl": results[0].approx_kl})
        losses = torch.stack([r.loss for r in results])
        if self.config.kl_penalty == "loss":
            kl = masked_mean(kl_penalty(logprobs, micro["reference"], self.config.kl_estimator), mask)
            self._diagnostics.append({"kl_loss": float(kl.detach())})
            losses = losses + self.kl.value * kl
        tokens = mask.sum().to(torch.float64).cpu()
        counts = tokens.repeat(len(results))
        zeros = torch.zeros(len(results), dtype=torch.float64)
        return ObjectiveLosses(losses, counts, zeros, zeros)

    def value_step(self, experience: dict[str, Any], rows: torch.Tensor) -> float:
        """Backpropagate the value heads' clipped loss on ``rows`` (their gradient only; averaged over processes)."""
        if experience["values"] is None:
            return 0.0
        mask = experience["rollout"].response_mask[rows]
        predicted = self.value_heads(experience["hidden"][rows]) * mask.unsqueeze(-1)
        loss = value_loss(predicted, experience["values"][rows], experience["returns"][rows], mask,
                          clip=self.config.cliprange_value)
        (self.config.vf_coef * loss).backward()
        if self.accelerator.num_processes > 1:
            for p in self.value_heads.parameters():
                p.grad = self.accelerator.reduce(p.grad, "mean")
        torch.nn.utils.clip_grad_norm_(self.value_heads.parameters(), self.config.max_grad_norm)
        return float(loss.detach())

    def training_step(self, step: int) -> dict[str, Any]:
        """One rollout step and its PPO epochs; returns the metrics to log."""
        c = self.config
        experience = self.make_experience(step)
        n = experience["advantages"].shape[0]
        micro_size = n // (c.num_mini_batches * c.gradient_accumulation_steps)
        self._diagnostics = []
        update_metrics: list[dict[str, float]] = []
        self.model.train()
        for epoch in range(c.ppo_epochs):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(c.seed, step, epoch)))
            for m in range(c.num_mini_batches):
                rows = order[m * micro_size * c.gradient_accumulation_steps:(m + 1) * micro_size * c.gradient_accumulation_steps]
                micros = [self._micro(experience, rows[a * micro_size:(a + 1) * micro_size].to(self.accelerator.device))
                          for a in range(c.gradient_accumulation_steps)]
                tokens = sum(float(mi["rollout"].response_mask.sum()) for mi in micros)
                counts = self.objective_step.reduce(torch.full((len(self.loss_names),), tokens, dtype=torch.float64))
                update = (step * c.ppo_epochs + epoch) * c.num_mini_batches + m
                result = self.objective_step.run(update, micros, counts, self.policy_losses)
                losses, _, _ = result.totals.means(counts)
                v_loss = self.value_step(experience, rows.to(self.accelerator.device))
                metrics = self.clip_and_step(self.params, step)
                metrics.update({f"{name}/policy_loss": float(losses[k]) for k, name in enumerate(self.loss_names)})
                if c.rule not in RL_METHODS:
                    metrics.update({f"{name}/weight": float(result.weights[k]) for k, name in enumerate(self.loss_names)})
                metrics.update({k: float(v) for k, v in result.info.items() if isinstance(v, (int, float))})
                metrics["value_loss"] = v_loss
                update_metrics.append(metrics)
                self.engine.sync_weights(self.policy())
        out = {key: float(np.mean([u[key] for u in update_metrics if key in u])) for key in update_metrics[-1]}
        out.update({key: float(np.nanmean([d[key] for d in self._diagnostics if key in d]))
                    for key in {k for d in self._diagnostics for k in d}})
        kl = experience["kl"]
        if kl is None:  # measured in the update's forward: mean per-token KL times the mean response length
            kl = self.reduce_mean(torch.tensor(out["kl_loss"] * experience["response_length"]))
        self.kl.update(kl, n * self.accelerator.num_processes)
        scores = experience["scores"]
        out.update({f"{name}/reward": self.reduce_mean(torch.tensor(scores[:, k].mean())) for k, name in enumerate(self.objectives)})
        out.update({"kl": kl, "kl_coef": self.kl.value, "response_length": experience["response_length"]})
        if self.tchebycheff is not None:
            out.update({f"{name}/tchebycheff_weight": float(w) for name, w in zip(self.objectives, self.tchebycheff.weights)})
        return out

    @staticmethod
    def _micro(experience: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
        old = experience["old_logprobs"]
        return {"rollout": experience["rollout"].select(rows), "old_logprobs": None if old is None else old[rows],
                "reference": experience["reference"][rows], "advantages": experience["advantages"][rows]}

    # ---- evaluation, checkpoints, the loop --------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, dict[str, float]]:
        """Each objective's mean reward on the held-out prompts (seeded samples, the training sampling settings),
        with a 95 % bootstrap interval over prompts. Each process samples and scores its share of the prompts (as
        many as the fullest share, so sharded generation stays in step) and every process gets the whole report."""
        if not self.eval_prompts:
            return {}
        n, world, rank = len(self.eval_prompts), self.accelerator.num_processes, self.accelerator.process_index
        share, per = self.eval_share(n)
        prompts = [self.eval_prompts[i] for i in share]
        _, responses, texts = self.sample(prompts + [self.eval_prompts[0]] * (per - len(prompts)),
                                          derived_seed(self.config.seed, 2**31 + rank))
        rows = np.zeros((per, len(self.objectives) + 1))
        if prompts:
            rows[:len(prompts), :-1] = self.score(prompts, texts[:len(prompts)], "eval")
        rows[:, -1] = [len(r) for r in responses]
        gathered = self.gather_rows(rows)
        rows = np.concatenate([gathered[r * per:r * per + len(evaluation_share(n, r, world)[0])] for r in range(world)])
        scores, response_tokens = rows[:, :-1], rows[:, -1]
        report = {}
        for k, name in enumerate(self.objectives):
            entry = {"mean": float(scores[:, k].mean())}
            if len(scores) > 1:
                interval = bootstrap_interval(scores[:, k], resamples=1000, seed=self.config.seed)
                entry.update({"low": interval.low, "high": interval.high})
            report[name] = entry
        report["response_tokens"] = {"mean": float(response_tokens.mean())}
        return report

    def checkpoint_model(self) -> torch.nn.Module:
        return torch.nn.ModuleDict({"policy": self.policy(), "value_heads": self.value_heads})

    def checkpoint_state(self) -> dict[str, Any]:
        return {**self.objective_step.state_dict(), "sampler": self.sampler.state_dict(),
                "kl_controller": self.kl.state_dict(),
                "whitening": None if self.whitening is None else self.whitening.state_dict(),
                "tchebycheff": None if self.tchebycheff is None else self.tchebycheff.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("sampler") not in (None, self.sampler.state_dict()):
            raise CheckpointError(f"the checkpoint drew its prompts as {state['sampler']}, this run as "
                                  f"{self.sampler.state_dict()}: the prompts or batch layout changed")
        self.objective_step.load_state_dict(state)
        self.kl.load_state_dict(state["kl_controller"])
        if self.whitening is not None and state.get("whitening"):
            self.whitening.load_state_dict(state["whitening"])
        if self.tchebycheff is not None and state.get("tchebycheff"):
            self.tchebycheff.load_state_dict(state["tchebycheff"])

    @property
    def progress_label(self) -> str:
        return f"rl[{self.config.rule}]"

    def progress_postfix(self, metrics: dict[str, Any]) -> dict[str, str]:
        return {f"{n[:8]}": f"{metrics[f'{n}/reward']:.3f}" for n in self.objectives}

    def run_summary(self) -> dict[str, Any]:
        return {"rule": self.config.rule, "train_prompts": len(self.train_prompts)}
