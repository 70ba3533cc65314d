"""Objectives: named scorers of (prompt, response) used as rewards and as pair labellers: rules and
offline scorers, and learned reward models (sequence-classification heads)."""

from moalign.objectives.base import RewardError, RuleScorer, Scorer, reward_statistics
from moalign.objectives.scorers import (
    SCORERS,
    ClippedLengthScorer,
    LengthScorer,
    ReadabilityScorer,
    SentimentScorer,
    ToxicityScorer,
    get_scorer,
    word_count,
)
from moalign.objectives.specs import build_rewards, parse_reward_spec
from moalign.objectives.whitening import RunningWhitening

__all__ = [
    "SCORERS",
    "ClippedLengthScorer",
    "LengthScorer",
    "ReadabilityScorer",
    "RewardError",
    "RewardModelScorer",
    "RuleScorer",
    "RunningWhitening",
    "Scorer",
    "build_rewards",
    "SentimentScorer",
    "ToxicityScorer",
    "get_scorer",
    "load_reward_model",
    "parse_reward_spec",
    "reward_model_scorers",
    "reward_statistics",
    "word_count",
]


_REWARD_MODEL_NAMES = ("RewardModelScorer", "load_reward_model", "reward_model_scorers")


def __getattr__(name: str):
    if name in _REWARD_MODEL_NAMES:  # keeps `import moalign.objectives` free of torch
        from moalign.objectives import reward_model

        return getattr(reward_model, name)
    raise AttributeError(name)
