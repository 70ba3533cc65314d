"""Offline scorers whose weights or lexicons ship in their wheels: sentiment, toxicity, readability, length
(and PAMA's clipped length reward).

None of them downloads anything at run time (``textstat`` is pinned to 0.7.3 for that reason).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from moalign.objectives.base import Scorer

_WORD = re.compile(r"\b\w+\b")


def word_count(text: str) -> int:
    """Number of word tokens in ``text``."""
    return len(_WORD.findall(text))


class SentimentScorer(Scorer):
    """VADER compound sentiment of the response, in [-1, 1]: warm and positive scores high."""

    def __init__(self, name: str = "sentiment"):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.name = name
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.array([self._analyzer.polarity_scores(r)["compound"] for r in responses], dtype=np.float64)


class ToxicityScorer(Scorer):
    """Probability that the response is offensive (alt-profanity-check's linear classifier); lower is better."""

    higher_is_better = False

    def __init__(self, name: str = "toxicity"):
        from profanity_check import predict_prob

        self.name = name
        self._predict_prob = predict_prob

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if not responses:
            return np.zeros(0)
        return np.asarray(self._predict_prob(list(responses)), dtype=np.float64)


class ReadabilityScorer(Scorer):
    """Flesch reading ease of the response (higher = easier to read); empty text scores 0."""

    def __init__(self, name: str = "readability"):
        with warnings.catch_warnings():  # textstat 0.7.3 imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import textstat

        self.name = name
        self._flesch = textstat.flesch_reading_ease

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.array([self._flesch(r) if word_count(r) else 0.0 for r in responses], dtype=np.float64)


class LengthScorer(Scorer):
    """Response length in words, ``log1p``-compressed so that doubling a long answer counts like a short one.

    With ``higher_is_better=True`` it rewards informative, detailed answers; with ``False`` it rewards
    concise ones.
    """

    def __init__(self, name: str = "length", higher_is_better: bool = True):
        self.name = name
        self.higher_is_better = higher_is_better

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.log1p(np.array([word_count(r) for r in responses], dtype=np.float64))


class ClippedLengthScorer(Scorer):
    """PAMA's length reward (arXiv 2508.07768, IMDb set-up): ``clip(l / 140, 70 / 140, 210 / 140)``.

    The paper writes ``l`` as the generated length without its unit; here it is characters, which puts
    responses of a few dozen tokens inside the unclipped range (in words almost every short response would
    sit at the floor and the reward would carry no signal).
    """

    def __init__(self, name: str = "length_clip", scale: float = 140.0, low: float = 0.5, high: float = 1.5):
        self.name, self.scale, self.low, self.high = name, scale, low, high

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.clip(np.array([len(r) for r in responses], dtype=np.float64) / self.scale, self.low, self.high)


#: Built-in objectives by name. Each maps to a zero-argument factory.
SCORERS: dict[str, Callable[[], Scorer]] = {
    "sentiment": SentimentScorer,
    "warm": lambda: SentimentScorer(name="warm"),
    "toxicity": ToxicityScorer,
    "readability": ReadabilityScorer,
    "readable": lambda: ReadabilityScorer(name="readable"),
    "length": LengthScorer,
    "informative": lambda: LengthScorer(name="informative", higher_is_better=True),
    "concise": lambda: LengthScorer(name="concise", higher_is_better=False),
    "length_clip": ClippedLengthScorer,
}


def get_scorer(name: str) -> Scorer:
    """Instantiate a built-in scorer by name; unknown names list the known ones."""
    try:
        factory = SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; built-in scorers are {sorted(SCORERS)}") from None
    return factory()
