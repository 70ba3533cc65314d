"""``moalign eval front|winrate`` as a user runs them, on random LoRA experts of the tiny model."""

import json

import numpy as np
import pytest

from helpers import make_expert, moalign
from moalign.data import load_prompt_set
from moalign.objectives import get_scorer

OBJECTIVES = ["informative", "warm"]


@pytest.fixture(scope="module")
def experts(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    return [make_expert(tiny_model_path, root / name / "final", seed=k, objectives=OBJECTIVES,
                        preference=[1.0 if o == name else 0.0 for o in OBJECTIVES])
            for k, name in enumerate(OBJECTIVES)]


def test_front_sweeps_soups_and_single_models_and_reuses_the_cache(experts, tiny_model_path, tmp_path):
    informative, warm = experts
    args = ["eval", "front", "--methods", f"experts=soup:{warm}+{informative},only_warm={warm.parent},base",
            "--model", tiny_model_path, "--divisions", "2", "--n-prompts", "3", "--max-new-tokens", "6",
            "--resamples", "50", "--out", tmp_path / "front"]
    out = moalign(*args)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "front" / "report.json").read_text())
    assert report["objectives"] == OBJECTIVES  # read from the experts' moalign_training.json
    methods = report["methods"]
    assert [p["preference"] for p in methods["experts"]["points"]] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert [p["preference"] for p in methods["only_warm"]["points"]] == [[0.0, 1.0]]
    assert [p["preference"] for p in methods["base"]["points"]] == [[0.5, 0.5]]
    # the soup is matched to objectives by the experts' one-hot preferences, whatever order they are given in:
    # its [0, 1] point is the warm expert alone, so it equals the single warm model
    assert methods["experts"]["points"][2]["scores"] == pytest.approx(methods["only_warm"]["points"][0]["scores"])
    assert (tmp_path / "front" / "front.png").stat().st_size > 1000
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "front" / "cache").rglob("*.jsonl")}
    assert len(cached) == 5
    again = moalign(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "front" / "cache").rglob("*.jsonl")} == cached
    assert json.loads((tmp_path / "front" / "report.json").read_text()) == report


def test_winrate_counts_match_an_independent_judgement(experts, tiny_model_path, fixtures, tmp_path):
    out = moalign("eval", "winrate", "--methods", f"informative={experts[0]},base",  # base model: the adapter's
                  "--data", fixtures / "golden.jsonl", "--max-new-tokens", "6", "--resamples", "50",
                  "--out", tmp_path / "wr")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "wr" / "report.json").read_text())
    assert report["prompts"] == 4 and report["preference"] == [0.5, 0.5]
    golden = load_prompt_set(fixtures / "golden.jsonl")
    for cache_file in (tmp_path / "wr" / "cache").rglob("*.jsonl"):
        method = cache_file.parent.name.rsplit("-", 1)[0]
        header, *records = [json.loads(line) for line in cache_file.read_text().split("\n") if line]
        assert len(header["fingerprint"]) == 64  # the first line says what the file was written for
        responses = [record["response"] for record in records]
        for name in OBJECTIVES:
            scorer = get_scorer(name)
            diff = np.array(scorer.reward(golden.prompts, responses)) - np.array(scorer.reward(golden.prompts, golden.references))
            row = report["methods"][method][name]
            assert (row["wins"], row["ties"], row["losses"]) == ((diff > 0).sum(), (diff == 0).sum(), (diff < 0).sum())
    assert (tmp_path / "wr" / "winrate.png").stat().st_size > 1000
    assert "| informative |" in (tmp_path / "wr" / "report.md").read_text()


def test_winrate_on_real_alpaca_eval(shared_data, tiny_model_path, tmp_path):
    out = moalign("eval", "winrate", "--methods", "base", "--model", tiny_model_path, "--objectives", "informative,readable",
                  "--data", shared_data / "alpaca-eval" / "alpaca_eval.jsonl", "--n-prompts", "6",
                  "--max-new-tokens", "8", "--resamples", "50", "--out", tmp_path / "alpaca")
    assert out.returncode == 0, out.stderr
    row = json.loads((tmp_path / "alpaca" / "report.json").read_text())["methods"]["base"]["informative"]
    assert row["wins"] + row["ties"] + row["losses"] == 6
    # 8 tokens never carry more information than text-davinci-003's full answers
    assert row["losses"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "nowhere/final"], "nowhere/final: no such folder"),
        (["--methods", "hoe:nowhere"], "nowhere: no such folder"),
        (["--methods", "pad:nowhere"], "unknown method kind 'pad'"),
        (["--methods", "soup:{informative}"], "soup: 1 experts for 2 objectives"),
        (["--methods", "base", "--objectives", "helpful"], "objective 'helpful' has no built-in scorer"),
        (["--methods", "base", "--objectives", "informative,warm", "--reference-point", "1"], "has 1 numbers for 2 objectives"),
        (["--methods", "base", "--objectives", "informative,warm", "--preferences", "1,0;1,2,3"], "has 3 numbers for 2"),
        (["--methods", "base", "--objectives", "informative,warm", "--preferences", "1,-1"], "negative"),
        (["--methods", "a=base,a={informative}"], "method names must be unique"),
        (["--methods", "models:{informative}+{informative}"], "were both trained at preference"),
    ],
)
def test_front_input_errors(experts, tiny_model_path, tmp_path, extra, message):
    extra = [e.format(informative=experts[0]) for e in extra]
    out = moalign("eval", "front", "--model", tiny_model_path, "--out", tmp_path, *extra)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_reward_models_judge_the_front(tiny_model_path, tmp_path):
    from helpers import make_reward_model
    from moalign.objectives import RewardModelScorer

    rm = make_reward_model(tiny_model_path, tmp_path / "rm")
    out = moalign("eval", "front", "--methods", "base", "--model", tiny_model_path, "--judges",
                  f"helpful=rm:{rm},harmless=rm:{rm}:harmless", "--n-prompts", "3", "--max-new-tokens", "4",
                  "--resamples", "20", "--out", tmp_path / "front")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "front" / "report.json").read_text())
    assert report["objectives"] == ["helpful", "harmless"]
    (cache_file,) = (tmp_path / "front" / "cache").rglob("*.jsonl")
    _, *records = [json.loads(line) for line in cache_file.read_text().split("\n") if line]
    prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
    for head in ("helpful", "harmless"):
        expected = RewardModelScorer.from_pretrained(str(rm), head=head).reward(prompts, responses).mean()
        assert report["methods"]["base"]["points"][0]["scores"][report["objectives"].index(head)] == pytest.approx(expected)
    bad = moalign("eval", "front", "--methods", "base", "--judges", "helpful=model:x", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "bad judge 'helpful=model:x'" in bad.stderr


def test_front_on_hh_dialogues_read_through_the_adapter(shared_data, tiny_model_path, tmp_path):
    from moalign.data import load_prompts

    hh = shared_data / "hh-rlhf-harmless-base-test" / "test.jsonl.gz"
    common = ["eval", "front", "--methods", "base", "--model", tiny_model_path, "--objectives", "concise,readable",
              "--prompts", hh, "--n-prompts", "3", "--max-new-tokens", "4", "--resamples", "20"]
    out = moalign(*common, "--prompt-adapter", "hh_rlhf", "--out", tmp_path / "front")
    assert out.returncode == 0, out.stderr
    (cache_file,) = (tmp_path / "front" / "cache").rglob("*.jsonl")
    _, *records = [json.loads(line) for line in cache_file.read_text().split("\n") if line]
    prompts = [r["prompt"] for r in records]
    assert prompts == load_prompts([hh], "hh_rlhf")[:3]
    assert all(isinstance(p, list) and p[-1]["role"] == "user" for p in prompts)  # dialogues, earlier turns kept
    bad = moalign(*common, "--prompt-adapter", "csv", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "unknown prompt adapter 'csv'" in bad.stderr
