import numpy as np
import pytest

from moalign.objectives import RuleScorer, get_scorer, reward_statistics

P = ["Tell me about your day."] * 2


def rewards(name, better, worse):
    return get_scorer(name).reward(P, [better, worse])


def test_sentiment_prefers_warm_text():
    r = rewards("sentiment", "I'm so glad you asked, what a lovely, wonderful day!", "This is awful, I hate it and it is terrible.")
    assert r[0] > 0.5 > -0.5 > r[1]


def test_toxicity_is_lower_is_better():
    scorer = get_scorer("toxicity")
    raw = scorer.score(P, ["Thank you for the kind help.", "Shut up you stupid idiot, go to hell."])
    assert raw[0] < 0.2 and raw[1] > 0.8
    assert not scorer.higher_is_better
    np.testing.assert_allclose(scorer.reward(P, ["a", "b"]), -scorer.score(P, ["a", "b"]))


def test_readability_prefers_plain_words():
    r = rewards("readability", "The cat sat on the mat. It was warm.",
                "Institutional epistemological considerations necessitate comprehensive methodological reevaluation.")
    assert r[0] > 60 > 0 > r[1]


def test_length_directions():
    short, long = "Yes.", "Yes, and here are several more words that explain the reason in detail."
    assert rewards("informative", long, short)[0] > rewards("informative", long, short)[1]
    assert rewards("concise", short, long)[0] > rewards("concise", short, long)[1]


def test_rule_scorer_nan_and_unknown_names():
    with pytest.raises(ValueError, match="returned NaN for item 1"):
        RuleScorer("odd", lambda p, r: float("nan") if r == "b" else 1.0).reward(["p", "p"], ["a", "b"])
    with pytest.raises(KeyError, match="unknown scorer 'humour'"):
        get_scorer("humour")
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        get_scorer("length").reward(["a", "b"], ["c"])


def test_reward_statistics():
    stats = reward_statistics([RuleScorer("n", lambda p, r: len(r))], ["p"] * 3, ["a", "bb", "ccc"])
    assert stats == {"n": {"mean": 2.0, "std": pytest.approx(np.std([1, 2, 3])), "min": 1.0, "max": 3.0}}
