import json

import numpy as np
import pytest

from moalign.eval import FrontError, FrontPoint, hypervolume, preference_utility, simplex_grid, sweep, write_front_report
from moalign.objectives import RuleScorer

PROMPTS = [f"question {i}" for i in range(12)]
SCORERS = [RuleScorer("detail", lambda p, r: len(r.split())), RuleScorer("brevity", lambda p, r: -len(r.split()))]


def steerable(calls):
    """A toy method: the weight on 'detail' sets the answer length (plus per-prompt variation)."""

    def generate(preference, prompts):
        calls.append(tuple(preference))
        return [" ".join(["word"] * (1 + int(10 * preference[0]) + i % 3)) for i, _ in enumerate(prompts)]

    return generate


def test_sweep_scores_every_preference_and_reuses_its_cache(tmp_path):
    calls = []
    grid = simplex_grid(2, 4)
    points = sweep("toy", steerable(calls), grid, PROMPTS, SCORERS, tmp_path, settings={"max_new_tokens": 8})
    assert len(points) == 5 and len(calls) == 5
    assert points[0].per_prompt.shape == (12, 2)
    assert points[0].scores[0] > points[-1].scores[0]  # more weight on detail, longer answers
    again = sweep("toy", steerable(calls), grid, PROMPTS, SCORERS, tmp_path, settings={"max_new_tokens": 8})
    assert len(calls) == 5  # no generate call: everything came from the cache
    np.testing.assert_array_equal(again[2].per_prompt, points[2].per_prompt)
    sweep("toy", steerable(calls), grid[:1], PROMPTS, SCORERS, tmp_path, settings={"max_new_tokens": 16})
    assert len(calls) == 6  # other settings, other cache entry
    with pytest.raises(ValueError, match=r"preferences must have shape \(M, 2\)"):
        sweep("toy", steerable(calls), simplex_grid(3, 2), PROMPTS, SCORERS, tmp_path)


def test_report_numbers_files_and_plots(tmp_path):
    grid = simplex_grid(2, 4)
    fronts = {
        "steerable": sweep("steerable", steerable([]), grid, PROMPTS, SCORERS, tmp_path / "cache"),
        "single": sweep("single", lambda pref, prompts: ["word word word"] * len(prompts), grid[2:3], PROMPTS,
                        SCORERS, tmp_path / "cache"),
    }
    report = write_front_report(fronts, ["detail", "brevity"], tmp_path / "out", resamples=100)
    ref = np.array(report["reference_point"])
    for method, front in fronts.items():
        entry = report["methods"][method]
        expected = hypervolume(np.vstack([p.scores for p in front]), ref)
        assert entry["hypervolume"]["estimate"] == pytest.approx(expected)
        assert entry["hypervolume"]["low"] <= expected <= entry["hypervolume"]["high"]
    assert report["methods"]["steerable"]["hypervolume"]["estimate"] > report["methods"]["single"]["hypervolume"]["estimate"]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["methods"].keys() == {"steerable", "single"}
    assert "| steerable | 5 |" in (tmp_path / "out" / "report.md").read_text()
    swept = report["methods"]["steerable"]
    spread0 = swept["spread"][0]
    assert spread0["estimate"] == pytest.approx(swept["best_per_objective"][0] - min(p["scores"][0] for p in swept["points"]))
    assert spread0["low"] <= spread0["estimate"] <= spread0["high"]
    for p in swept["points"]:
        for score, ci in zip(p["scores"], p["scores_ci"]):
            assert ci["low"] <= score <= ci["high"]
    assert 0 < report["methods"]["single"]["preference_utility"]["estimate"] < swept["preference_utility"]["estimate"]
    png = (tmp_path / "out" / "front.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    with pytest.raises(FrontError, match="do not dominate the reference point"):
        write_front_report(fronts, ["detail", "brevity"], tmp_path / "bad", reference=np.array([100.0, 0.0]))


def test_three_objectives_get_pairwise_plots(tmp_path):
    scorers = [*SCORERS, RuleScorer("q", lambda p, r: float(len(r) % 7))]
    front = sweep("m", steerable([]), simplex_grid(3, 2), PROMPTS, scorers, tmp_path / "c")
    write_front_report({"m": front}, ["detail", "brevity", "q"], tmp_path / "o", resamples=50)
    assert sorted(p.name for p in (tmp_path / "o").glob("front_*.png")) == [
        "front_brevity_q.png", "front_detail_brevity.png", "front_detail_q.png"]


def test_preference_utility_hand_worked():
    def point(method, preference, scores):
        return FrontPoint(method, preference, np.tile(scores, (4, 1)))

    points = {
        "steerable": [point("steerable", [1.0, 0.0], [2.0, 0.5]), point("steerable", [0.0, 1.0], [0.5, 2.0])],
        "single": [point("single", [0.5, 0.5], [1.0, 1.0])],
    }
    utility = preference_utility(points, np.zeros(2), resamples=20)
    # scores / 2 (best is 2 on both). The grid is {(1,0), (0,1), (.5,.5)}. steerable: 1 at its own two
    # preferences; at (.5,.5) its nearest point is the first (a tie), (1, .25) -> .625. single: .5 everywhere.
    assert utility["steerable"].estimate == pytest.approx((1 + 1 + 0.625) / 3)
    assert utility["single"].estimate == pytest.approx(0.5)
    assert utility["single"].low == pytest.approx(0.5) and utility["single"].high == pytest.approx(0.5)


def test_a_cache_entry_that_does_not_match_is_regenerated_never_averaged(tmp_path):
    calls = []
    grid = simplex_grid(2, 1)[:1]
    first = sweep("toy", steerable(calls), grid, PROMPTS, SCORERS, tmp_path)
    (entry,) = (tmp_path / "toy").glob("*.jsonl")
    lines = entry.read_text().split("\n")
    entry.write_text("\n".join(lines[:-3]) + "\n")  # a truncated file: fewer records than prompts
    again = sweep("toy", steerable(calls), grid, PROMPTS, SCORERS, tmp_path)
    assert len(calls) == 2 and again[0].per_prompt.shape == (12, 2)
    np.testing.assert_array_equal(again[0].per_prompt, first[0].per_prompt)
    header = json.loads(lines[0])
    header["fingerprint"] = "0" * 64  # written for other prompts or settings under a colliding name
    entry.write_text("\n".join([json.dumps(header), *lines[1:]]))
    sweep("toy", steerable(calls), grid, PROMPTS, SCORERS, tmp_path)
    assert len(calls) == 3


def test_a_response_with_a_unicode_line_separator_is_read_back_from_the_cache(tmp_path):
    calls = []

    def odd(preference, prompts):
        calls.append(1)
        return ["first\u2028second\u2029third" for _ in prompts]

    first = sweep("odd", odd, simplex_grid(2, 1)[:1], PROMPTS, SCORERS, tmp_path)
    again = sweep("odd", odd, simplex_grid(2, 1)[:1], PROMPTS, SCORERS, tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(again[0].per_prompt, first[0].per_prompt)


def test_a_degenerate_front_has_zero_hypervolume_and_a_zero_interval(tmp_path):
    same = np.tile([[1.0, 2.0]], (12, 1)) + np.random.default_rng(0).normal(0, 0.5, (12, 2))
    points = {m: [FrontPoint(m, [0.5, 0.5], same.copy())] for m in ("a", "b")}
    report = write_front_report(points, ["detail", "brevity"], tmp_path, resamples=50)
    assert "degenerate" in report
    for entry in report["methods"].values():
        assert entry["hypervolume"] == {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95}
