"""MODPO (Zhou et al. 2023, "Beyond One-Preference-Fits-All Alignment"): DPO on one objective's pairs, with the
other objectives' rewards as a margin, so one run reaches the policy linear scalarisation would at a preference
``w`` without reinforcement learning.

For the main objective ``m`` (whose labelled pairs train the policy), rewards ``r_j`` for the other objectives
(built-in scorers or reward models) and a pair in which ``y_w`` is preferred to ``y_l`` on ``m``::

    L = -log sigmoid( (1 / w_m) [ beta (log pi/ref (y_w) - log pi/ref (y_l)) - sum_j w_j (r_j(x, y_w) - r_j(x, y_l)) ] )

(``ipo`` puts the same argument in the IPO loss). The rewards of every pair are computed once, before training.
One policy per preference, as in the paper: sweep ``w`` and compare the runs with
``moalign eval front --methods modpo=models:A+B+...``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from moalign.config import ConfigError
from moalign.data import PreferenceDataset
from moalign.objectives import build_rewards, parse_reward_spec
from moalign.objectives.base import RewardError
from moalign.preference import normalize_preference
from moalign.storage import cache_dir
from moalign.train.dpo_config import MultiObjectiveDPOConfig
from moalign.train.dpo_trainer import MultiObjectiveDPOTrainer
from moalign.train.losses import ObjectiveLosses, objective_losses


@dataclass
class MODPOConfig(MultiObjectiveDPOConfig):
    """MODPO: the settings of :class:`~moalign.train.MultiObjectiveDPOConfig`, and:

        main_objective: the objective whose labelled pairs train the policy (pairs that do not label it are
            skipped; its weight must be positive).
        margin_rewards: one reward per other objective of the trade-off: a built-in scorer named as the objective
            (``warm``) or ``NAME=rm:PATH[:HEAD]`` (a reward model's head, e.g. one trained with ``moalign train
            rm``; the paper's margin models are reward models trained on those objectives' pairs). These objectives
            need no labelled pairs.
        preference: ``w``, the weights of ``main_objective`` and then of each margin reward, in that order
            (required; normalised to sum 1).
        reward_batch_size: pairs scored at a time when the margins are computed.

    ``rule`` is ``linear``, the only rule: MODPO's loss is one objective's. The data's other labelled objectives are
    reported, not trained: evaluation gives, for the main objective, MODPO's loss and how often its argument favours
    the labelled response on held-out pairs, and for the others the DPO loss and accuracy of the policy's implicit
    reward on their labels.
    """

    main_objective: str | None = None
    margin_rewards: list[str] = field(default_factory=list)
    reward_batch_size: int = 64
    rule: str = "linear"
    output_dir: str = "runs/modpo"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rule != "linear":
            raise ConfigError(f"MODPO trains one objective's loss, so it takes no combination rule (got rule "
                              f"{self.rule!r}); its trade-off is the preference")
        if not self.main_objective:
            raise ConfigError("MODPO needs main_objective: the objective whose labelled pairs train the policy")
        if isinstance(self.margin_rewards, str):
            self.margin_rewards = [s for s in self.margin_rewards.split(",") if s.strip()]
        names = self.trade_off_objectives
        if len(set(names)) != len(names):
            raise ConfigError(f"main_objective and margin_rewards name an objective twice: {names}")
        if self.preference is None:
            raise ConfigError(f"MODPO needs a preference: one weight for each of {names}, in that order")
        try:
            weights = normalize_preference(self.preference, names)
        except ValueError as exc:
            raise ConfigError(f"preference {self.preference} for {names}: {exc}") from None
        if weights[0] <= 0:
            raise ConfigError(f"the main objective {self.main_objective!r} needs a positive weight, got preference "
                              f"{self.preference} for {names}")
        if self.reward_batch_size < 1:
            raise ConfigError(f"reward_batch_size must be at least 1, got {self.reward_batch_size}")

    @property
    def trade_off_objectives(self) -> list[str]:
        """The objectives ``preference`` weighs: the main one, then one per margin reward."""
        return [self.main_objective, *(parse_reward_spec(spec)[0] for spec in self.margin_rewards)]


class MODPOTrainer(MultiObjectiveDPOTrainer):
    """Train one policy at the preference ``config.preference`` by MODPO (see the module docstring).

    Takes the same arguments as :class:`~moalign.train.MultiObjectiveDPOTrainer`. The reward margins of the train
    and eval pairs are computed when the trainer is built (every process scores all pairs) and cached per reward
    (``$MOALIGN_CACHE/modpo-margins``), so runs at other preferences on the same data and rewards reuse them.
    """

    tracker_project = "moalign-modpo"

    def __init__(self, config: MODPOConfig, **kwargs: Any):
        super().__init__(config, **kwargs)
        weights = normalize_preference(config.preference, config.trade_off_objectives)
        self.main_weight, self.margin_weights = float(weights[0]), [float(w) for w in weights[1:]]
        scorers = build_rewards(config.margin_rewards, device=self.accelerator.device)
        self.reward_gaps = {split: self.pair_reward_gaps(dataset, scorers)
                            for split, dataset in (("train", self.train_dataset), ("eval", self.eval_dataset))
                            if dataset is not None}

    def rule_preference(self) -> torch.Tensor:
        """The main objective alone (its index becomes ``self.main``): the others enter through the margin, and the
        data's other labels are reported."""
        main = self.config.main_objective
        if main not in self.objectives:
            raise ConfigError(f"main_objective {main!r} is not one of the data's objectives {list(self.objectives)}")
        self.main = self.objectives.index(main)
        return torch.nn.functional.one_hot(torch.tensor(self.main), len(self.objectives)).double()

    def pair_reward_gaps(self, dataset: PreferenceDataset, scorers: list) -> torch.Tensor:
        """``(N,)`` ``sum_j w_j (r_j(x, a) - r_j(x, b))`` over the margin rewards, for every pair of ``dataset``."""
        gaps = torch.zeros(len(dataset), dtype=torch.float64)
        for scorer, weight in zip(scorers, self.margin_weights):
            if weight:
                gaps += weight * self.reward_differences(dataset, scorer)
        return gaps

    def reward_differences(self, dataset: PreferenceDataset, scorer: Any) -> torch.Tensor:
        """``(N,)`` ``r(x, a) - r(x, b)`` of one reward for every pair, cached in the moalign cache under the reward's
        fingerprint and the pairs' texts, so a sweep over preferences scores the data once."""
        key = hashlib.sha256(json.dumps([scorer.fingerprint(), [(p.prompt, p.response_a, p.response_b)
                                                                for p in dataset.pairs]], sort_keys=True).encode())
        path = cache_dir() / "modpo-margins" / f"{key.hexdigest()[:24]}.safetensors"
        if path.exists():
            return load_file(path)["differences"]
        differences = np.zeros(len(dataset), dtype=np.float64)
        size = self.config.reward_batch_size
        for start in tqdm(range(0, len(dataset), size), desc=f"margin reward {scorer.name}", leave=False,
                          disable=not self.accelerator.is_main_process):
            pairs = dataset.pairs[start:start + size]
            prompts = [p.prompt for p in pairs]
            try:
                chosen = scorer.reward(prompts, [p.response_a for p in pairs])
                other = scorer.reward(prompts, [p.response_b for p in pairs])
            except (ValueError, RuntimeError, OSError) as exc:  # RewardError is a ValueError
                raise RewardError(f"margin reward {scorer.name!r} on pairs {start}-{start + len(pairs) - 1}: {exc}") from exc
            differences[start:start + len(pairs)] = chosen - other
        result = torch.from_numpy(differences)
        if self.accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            save_file({"differences": result}, partial)
            os.replace(partial, path)
        return result

    def objective_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], index: list[int],
                         split: str) -> ObjectiveLosses:
        """The main objective's MODPO loss, and every other objective's plain DPO loss (reported, weight 0)."""
        margins = self.implicit_margins(model, batch, index, split)
        gaps = self.reward_gaps[split][index].to(margins.device, margins.dtype)
        main = modpo_margins(margins, gaps, beta=self.config.beta, main_weight=self.main_weight)
        columns = torch.stack([main if k == self.main else margins for k in range(len(self.objectives))], 1)
        return objective_losses(columns, batch["labels"], batch["label_mask"], beta=self.config.beta,
                                loss_type=self.config.loss_type)

    def skip_reason(self, counts: torch.Tensor) -> str | None:
        return None if counts[self.main] > 0 else f"no pair of this step is labelled on {self.config.main_objective!r}"

    def evaluate(self, dataset: PreferenceDataset | None = None) -> dict[str, dict[str, float]]:
        if dataset is not None and all(dataset is not d for d in (self.train_dataset, self.eval_dataset)):
            raise ValueError("MODPO evaluates its train and eval datasets only: their reward margins are computed "
                             "when the trainer is built")
        return super().evaluate(dataset)

    @property
    def progress_label(self) -> str:
        return f"modpo[{self.config.main_objective}]"

    def run_summary(self) -> dict[str, Any]:
        # "objectives" are those the preference weighs, so `eval front` places the model at its preference
        return {"rule": "modpo", "objectives": self.config.trade_off_objectives, "data_objectives": list(self.objectives),
                "main_objective": self.config.main_objective, "margin_rewards": list(self.config.margin_rewards),
                "train_pairs": len(self.train_dataset)}


def modpo_margins(margins: torch.Tensor, reward_gaps: torch.Tensor, *, beta: float, main_weight: float) -> torch.Tensor:
    """The main objective's margin in MODPO's loss: ``(h - gap / beta) / w_m``, so that the DPO loss of it,
    ``-log sigmoid(beta * s * margin)``, is MODPO's ``-log sigmoid((s / w_m) (beta h - gap))`` for label sign ``s``.

    ``margins``: the implicit reward margins ``h`` of response A over B; ``reward_gaps``: ``sum_j w_j (r_j(A) -
    r_j(B))`` over the other objectives' rewards."""
    return (margins - reward_gaps / beta) / main_weight
