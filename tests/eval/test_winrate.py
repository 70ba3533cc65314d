import json

import numpy as np
import pytest

from moalign.eval import FrontPoint, golden_win_rates, write_winrate_report


def test_per_objective_counts_and_preference_weighted_overall_vote():
    model = np.array([[2.0, 0.0], [1.0, 5.0], [0.0, 0.0], [3.0, 1.0]])
    golden = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    # objective a: W T L W; objective b: L W L T
    result = golden_win_rates(FrontPoint("m", [0.5, 0.5], model), golden, ["a", "b"], resamples=50)
    assert (result["a"]["wins"], result["a"]["ties"], result["a"]["losses"]) == (2, 1, 1)
    assert (result["b"]["wins"], result["b"]["ties"], result["b"]["losses"]) == (1, 1, 2)
    # equal weights: W+L = tie, T+W = win, L+L = loss, W+T = win
    assert (result["overall"]["wins"], result["overall"]["ties"], result["overall"]["losses"]) == (2, 1, 1)
    assert result["a"]["net_win_rate"]["estimate"] == pytest.approx(0.25)
    assert result["a"]["win_rate"]["estimate"] == pytest.approx((2 + 0.5) / 4)
    skewed = golden_win_rates(FrontPoint("m", [0.9, 0.1], model), golden, ["a", "b"], resamples=50)
    assert (skewed["overall"]["wins"], skewed["overall"]["ties"], skewed["overall"]["losses"]) == (3, 0, 1)
    tied = golden_win_rates(FrontPoint("m", [0.5, 0.5], model), golden, ["a", "b"], tie_margin=1.0, resamples=50)
    assert tied["a"]["ties"] == 3


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must both be"):
        golden_win_rates(FrontPoint("m", [1.0], np.zeros((3, 1))), np.zeros((4, 1)), ["a"])


def test_report_files(tmp_path):
    rng = np.random.default_rng(0)
    results = {m: golden_win_rates(FrontPoint(m, [0.5, 0.5], rng.normal(size=(20, 2))), np.zeros((20, 2)), ["a", "b"],
                                   resamples=50) for m in ("x", "y")}
    write_winrate_report(results, ["a", "b"], tmp_path, details={"data": "d"})
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["methods"]) == {"x", "y"} and report["data"] == "d"
    assert "| x |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "winrate.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no methods"):
        write_winrate_report({}, ["a"], tmp_path)
