"""Objectives: named scorers of (prompt, response) used as rewards and as pair labellers."""

from moalign.objectives.base import RuleScorer, Scorer, reward_statistics
from moalign.objectives.scorers import (
    SCORERS,
    LengthScorer,
    ReadabilityScorer,
    SentimentScorer,
    ToxicityScorer,
    get_scorer,
    word_count,
)

__all__ = [
    "SCORERS",
    "LengthScorer",
    "ReadabilityScorer",
    "RuleScorer",
    "Scorer",
    "SentimentScorer",
    "ToxicityScorer",
    "get_scorer",
    "reward_statistics",
    "word_count",
]
