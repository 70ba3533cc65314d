"""Training HoE's router experts (level 2) with the RL trainer: PPO on smooth Tchebycheff at the router's anchor.

Everything but the new router is frozen (base model and LoRA experts). The reward is
``Σ_i w_i λ_i (R_i − z_i*)`` with ``w`` from online mirror descent (``rule: tchebycheff``), where the ideal point
``z*`` is, per objective, the mean reward of that objective's single-objective expert on calibration prompts
(unless given). The reference for the KL penalty is the model before training, i.e. with the router at its
initial, parameter-free weights. The output ``final/`` folder is a HoE model with the trained router.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from moalign.config import ConfigError
from moalign.models.decoding import eos_ids
from moalign.hoe.layer import MixingWeights
from moalign.hoe.model import HoEModel
from moalign.objectives import build_rewards
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer
from moalign.train.rl_prompts import load_rl_prompts
from moalign.train.rollout import DecodeEngine


@dataclass
class RouterTrainingConfig(MultiObjectiveRLConfig):
    """:class:`~moalign.train.MultiObjectiveRLConfig` for one router expert.

    Parameters:
        hoe: the HoE model folder (``moalign hoe build``); its base model is used (``model`` is ignored).
        anchor: the router's anchor preference (default: the simplex centre).
        num_candidates: experts the router scores, the nearest to its anchor (default: as many as objectives).
        ideal_point: z*, one value per objective (default: calibrated, see the module docstring).
        calibration_prompts: prompts used to calibrate z*.
        omd_step_size: η of the mirror-descent step over objective weights.

    HoE gives no PPO settings: the KL coefficient is RiC's (0.2, the recipe HoE's set-ups come from); the learning
    rate is larger than a LoRA's because only a few thousand router weights train; the rest are the RL defaults.
    """

    hoe: str = ""
    anchor: list[float] | None = None
    num_candidates: int | None = None
    ideal_point: list[float] | None = None
    calibration_prompts: int = 32
    omd_step_size: float = 1.0
    rule: str = "tchebycheff"
    use_lora: bool = False
    learning_rate: float = 1e-3
    kl_coef: float = 0.2
    output_dir: str = "runs/hoe-routers"
    rule_options: dict = field(default_factory=dict)
    rollout_engine: str = "decode"

    def __post_init__(self) -> None:
        if self.rollout_engine != "decode":
            raise ConfigError("routers roll out with rollout_engine: decode (generate cannot drive a HoE model pinned "
                              "to a preference)")
        if not self.hoe:
            raise ConfigError("hoe: give the HoE model folder whose router to train")
        if self.rule != "tchebycheff" or self.use_lora:
            raise ConfigError("routers train with rule tchebycheff and without LoRA (everything else is frozen)")
        if self.calibration_prompts < 1:
            raise ConfigError("calibration_prompts must be at least 1")
        # The RL config checks the options now; a calibrated ideal point replaces the placeholder at training time.
        ideal = list(self.ideal_point) if self.ideal_point is not None else [0.0] * len(self.rewards)
        self.rule_options = {"ideal": ideal, "step_size": self.omd_step_size}
        super().__post_init__()


class AnchorPolicy(nn.Module):
    """A HoE model pinned to one preference, as the RL trainer's policy: ``forward`` routes every row there."""

    def __init__(self, hoe: HoEModel, preference: Sequence[float]):
        super().__init__()
        self.hoe = hoe
        self.preference = [float(p) for p in preference]
        self._mixing: dict[tuple, MixingWeights] = {}

    @property
    def config(self) -> Any:
        return self.hoe.base.config

    def forward(self, **kwargs: Any) -> Any:
        return self.hoe(mixing_weights=self.mixing_weights(kwargs), **kwargs)

    def mixing_weights(self, forward_kwargs: dict[str, Any]) -> MixingWeights:
        """The preference's mixing weights for this batch size, made once: a forward then builds no tensor from
        host data, so a CUDA graph can record it (CUDA-graph rollouts)."""
        inputs = forward_kwargs.get("input_ids")
        inputs = inputs if inputs is not None else forward_kwargs["inputs_embeds"]
        key = (inputs.shape[0], inputs.device, tuple(self.hoe.routers.keys()))
        if key not in self._mixing:
            self._mixing[key] = self.hoe.mixing_weights(self.preference, batch=inputs.shape[0])
        return self._mixing[key]

    def save_pretrained(self, directory: str | Path, state_dict: Any = None) -> None:
        """The HoE model's folder, from its own weights (a sharded run rebuilds the policy whole first)."""
        if state_dict is not None:
            raise ValueError("AnchorPolicy saves its own weights; load a gathered state dict into a whole copy first")
        self.hoe.save_pretrained(directory)


def calibrate_ideal_point(hoe: HoEModel, scorers: Sequence[Any], prompts: Sequence[Any], *, max_new_tokens: int,
                          temperature: float, seed: int) -> list[float]:
    """Per objective, the mean reward of its single-objective expert (one-hot preference) on ``prompts``."""
    ideal = []
    for k, scorer in enumerate(scorers):
        one_hot = np.eye(len(scorers))[k]
        texts = hoe.generate(list(prompts), one_hot, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        ideal.append(float(np.mean(scorer.reward(list(prompts), texts))))
    return ideal


class HoERouterTrainer(MultiObjectiveRLTrainer):
    """Adds a router expert at ``config.anchor`` to the HoE model and trains it (see the module docstring)."""

    tracker_project = "moalign-hoe"

    def __init__(self, config: RouterTrainingConfig, *, hoe: HoEModel | None = None, rewards: Sequence[Any] | None = None):
        c = config
        hoe = hoe if hoe is not None else HoEModel.from_pretrained(c.hoe, dtype=c.dtype)
        scorers = list(rewards) if rewards is not None else build_rewards(c.rewards)
        names = [s.name for s in scorers]
        if sorted(names) != sorted(hoe.objectives):
            raise ConfigError(f"rewards {names} do not match the HoE model's objectives {hoe.objectives}")
        scorers = [scorers[names.index(o)] for o in hoe.objectives]
        anchor = c.anchor if c.anchor is not None else [1.0 / len(hoe.objectives)] * len(hoe.objectives)
        self.router_index = hoe.add_router(anchor, c.num_candidates)
        c.preference = list(hoe.config.anchors[self.router_index].preference)
        if c.ideal_point is None:
            prompts = load_rl_prompts(c)
            random.Random(c.seed + 1).shuffle(prompts)
            c.rule_options["ideal"] = calibrate_ideal_point(hoe, scorers, prompts[:c.calibration_prompts],
                                                            max_new_tokens=c.max_new_tokens,
                                                            temperature=c.temperature, seed=c.seed)
        self.ideal = list(c.rule_options["ideal"])
        c.model = hoe.config.base_model
        super().__init__(c, model=AnchorPolicy(hoe, c.preference), processing_class=hoe.tokenizer, rewards=scorers)

    def default_engine(self, *, synced_gpus: bool) -> DecodeEngine:
        """moalign's decoding loop: ``generate`` cannot drive a HoE model pinned to a preference."""
        base = self.policy().hoe.base
        return DecodeEngine(self.tokenizer, eos_ids(base, self.tokenizer), synced_gpus=synced_gpus,
                            decoding=self.config.rollout_decoding)

    def final_model(self, full_state: dict[str, Any] | None = None) -> tuple[nn.Module, None]:
        """The HoE model with its trained router. Under FSDP2 the trained model holds only shards, so it is rebuilt
        whole on the CPU from the HoE folder, the same router added, and the gathered weights loaded."""
        if full_state is None:
            return self.policy(), None
        policy = self.policy()
        anchor = policy.hoe.config.anchors[self.router_index]
        hoe = HoEModel.from_pretrained(self.config.hoe, dtype=self.config.dtype)
        if hoe.add_router(anchor.preference, len(anchor.candidates)) != self.router_index:
            raise RuntimeError("the rebuilt HoE model placed the router at another anchor")
        whole = AnchorPolicy(hoe, policy.preference)
        whole.load_state_dict(full_state)
        return whole, None

    def evaluate(self) -> dict[str, dict[str, float]]:
        """The RL evaluation plus the Tchebycheff value ``min_i λ_i (R̄_i − z_i*)`` of the held-out means."""
        report = super().evaluate()
        if report:
            gaps = [lam * (report[o]["mean"] - z) for o, lam, z in zip(self.objectives, self.preference.tolist(), self.ideal)]
            report["tchebycheff"] = {"mean": float(min(gaps))}
        return report

    def checkpoint_model(self) -> nn.Module:
        return nn.ModuleDict({"router": self.policy().hoe.routers[str(self.router_index)], "value_heads": self.value_heads})

