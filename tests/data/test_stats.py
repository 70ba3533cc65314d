import math

from moalign.data import PreferenceDataset, disagreement_rate, format_summary, make_pair, summarize


def test_counts_and_disagreement_by_hand():
    rows = [
        {"x": "a", "y": "b"},    # disagree
        {"x": "a", "y": "a"},    # agree
        {"x": "b", "y": "a"},    # disagree
        {"x": "tie", "y": "a"},  # not comparable (tie)
        {"x": "b"},              # not comparable (y absent)
    ]
    ds = PreferenceDataset([make_pair(f"p{i}", "r1", "r2", labels) for i, labels in enumerate(rows)])
    rate, n = disagreement_rate(ds, "x", "y")
    assert (rate, n) == (2 / 3, 3)
    s = summarize(ds)
    assert s["objectives"]["x"] == {"labelled": 5, "a": 2, "b": 2, "tie": 1, "absent": 0}
    assert s["objectives"]["y"] == {"labelled": 4, "a": 3, "b": 1, "tie": 0, "absent": 1}
    text = format_summary(s)
    assert "x vs y: 66.7% of 3" in text and "pairs: 5" in text


def test_disagreement_is_nan_when_never_comparable():
    ds = PreferenceDataset([make_pair("p", "a", "b", {"x": "a"}), make_pair("q", "a", "b", {"y": "b"})])
    rate, n = disagreement_rate(ds, "x", "y")
    assert n == 0 and math.isnan(rate)
    assert "never both labelled" in format_summary(summarize(ds))
