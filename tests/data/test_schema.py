import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moalign.data import DataError, Label, PreferenceDataset, concat_datasets, labels_from_scores, make_pair, parse_label


def pair(labels, prompt="p", a="x", b="y"):
    return make_pair(prompt, a, b, labels)


def test_parse_label_accepts_the_documented_spellings():
    assert parse_label("A") is Label.A and parse_label("first") is Label.A
    assert parse_label("b") is Label.B and parse_label(" second ") is Label.B
    assert parse_label("tie") is Label.TIE
    for absent in (None, "", "none", "N/A", float("nan")):
        assert parse_label(absent) is None
    for bad in ("better", 1, 0, True):
        with pytest.raises(ValueError, match="unknown label"):
            parse_label(bad)


@given(
    st.floats(-100, 100, allow_nan=False),
    st.floats(-100, 100, allow_nan=False),
    st.floats(0, 10, allow_nan=False),
)
def test_labels_from_scores_follow_the_score_difference(a, b, margin):
    label = labels_from_scores({"o": a}, {"o": b}, margin)["o"]
    if abs(a - b) <= margin:
        assert label is Label.TIE
    else:
        assert label is (Label.A if a > b else Label.B)


def test_labels_from_scores_per_objective_margins_and_nan():
    out = labels_from_scores({"x": 1.0, "y": 1.0}, {"x": 1.5, "y": 1.5}, {"x": 1.0})
    assert out == {"x": Label.TIE, "y": Label.B}
    with pytest.raises(ValueError, match="NaN"):
        labels_from_scores({"x": math.nan}, {"x": 1.0})


def test_make_pair_explicit_labels_win_over_scores():
    p = make_pair("q", "a", "b", {"o": "b"}, {"o": 5, "w": 0.9}, {"o": 1, "w": 0.1})
    assert p.labels == {"o": Label.B, "w": Label.A}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(prompt="  "), "prompt"),
        (dict(prompt=[]), "prompt"),
        (dict(prompt=[{"role": "robot", "content": "hi"}]), "prompt"),
        (dict(prompt=[{"role": "user", "content": ""}]), "prompt"),
        (dict(response_a=""), "response_a"),
        (dict(response_b=None), "response_b"),
        (dict(labels={"o": "maybe"}), "labels.o"),
        (dict(labels={"o": None}), "labels"),
        (dict(labels={}, scores_a={"o": "high"}, scores_b={"o": 1}), "scores_a.o"),
        (dict(labels={}, scores_a={"o": float("nan")}, scores_b={"o": 1}), "scores_a.o"),
    ],
)
def test_make_pair_errors_name_row_and_field(kwargs, field):
    args = dict(prompt="q", response_a="a", response_b="b", labels={"o": "a"})
    args.update(kwargs)
    with pytest.raises(DataError) as err:
        make_pair(**args, row=7)
    assert err.value.row == 7 and err.value.field == field
    assert "row 7" in str(err.value) and repr(field) in str(err.value)


def test_dataset_validates_objectives():
    with pytest.raises(DataError, match="duplicate objective"):
        PreferenceDataset([pair({"a": "a"})], ("a", "a"))
    with pytest.raises(DataError, match="unknown objective"):
        PreferenceDataset([pair({"a": "a"}), pair({"z": "b"})], ("a",))
    ds = PreferenceDataset([pair({"h": "a"}), pair({"s": "b", "h": "tie"})])
    assert ds.objectives == ("h", "s")
    labels, present = ds.label_matrix()
    np.testing.assert_array_equal(labels, [[1, 0], [0, -1]])
    np.testing.assert_array_equal(present, [[True, False], [True, True]])


def test_select_split_concat():
    ds = PreferenceDataset([pair({"h": "a"}), pair({"s": "b"}), pair({"h": "b", "s": "a"})])
    only_s = ds.select_objectives(["s"])
    assert len(only_s) == 2 and only_s.objectives == ("s",)
    with pytest.raises(DataError, match="unknown objective"):
        ds.select_objectives(["q"])
    big = PreferenceDataset([pair({"h": "a"}, prompt=f"p{i}") for i in range(50)])
    train, test = big.split(0.2, seed=1)
    assert len(test) == 10 and len(train) == 40
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test})
    assert [p.prompt for p in big.split(0.2, seed=1)[1]] == [p.prompt for p in test]
    both = concat_datasets([PreferenceDataset([pair({"h": "a"})]), PreferenceDataset([pair({"s": "b"})])])
    assert both.objectives == ("h", "s") and len(both) == 2
