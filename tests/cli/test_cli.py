"""The ``moalign`` command as a user runs it, in a subprocess."""

import json

import pytest

from helpers import moalign


def test_version_and_help():
    out = moalign("--version")
    assert out.returncode == 0 and out.stdout.startswith("moalign ")
    assert "demo" in moalign("--help").stdout


def test_data_check_on_fixtures_and_real_hh(fixtures, shared_data):
    out = moalign("data", "check", fixtures / "pku_saferlhf.jsonl", "--adapter", "pku_saferlhf")
    assert out.returncode == 0, out.stderr
    assert "helpful" in out.stdout and "harmless" in out.stdout and "pairs: 2" in out.stdout
    out = moalign("data", "check", "--adapter", "hh_rlhf", "--json",
                  shared_data / "hh-rlhf-helpful-base-test" / "test.jsonl.gz",
                  shared_data / "hh-rlhf-harmless-base-test" / "test.jsonl.gz")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)["(all files)"]
    assert summary["pairs"] == 4666
    assert summary["objectives"]["helpful"]["labelled"] == 2354
    assert summary["objectives"]["harmless"]["labelled"] == 2312


def test_data_check_reports_bad_rows_and_drops_only_when_asked(tmp_path):
    path = tmp_path / "d.jsonl"
    good = {"prompt": "q", "response_a": "a", "response_b": "b", "labels": {"o": "a"}}
    path.write_text("\n".join(json.dumps(r) for r in [good, {**good, "labels": {"o": "?"}}, good]))
    out = moalign("data", "check", path)
    assert out.returncode == 2
    assert "row 1, field 'labels.o': unknown label '?'" in out.stderr and "Traceback" not in out.stderr
    out = moalign("data", "check", path, "--drop-invalid")
    assert out.returncode == 0 and "dropped invalid: 1" in out.stdout


def test_models_prepare_rejects_a_corrupt_gguf(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"garbage")
    out = moalign("models", "prepare", "--gguf", bad, "--out", tmp_path / "out")
    assert out.returncode == 2 and "is not a GGUF file" in out.stderr


def test_tiny_demo_runs_end_to_end(tmp_path):
    out = moalign("demo", "--tiny", "--out", tmp_path / "demo", "--n-prompts", "20", "--train-steps", "3")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["task_summary"]["pairs"] == 60
    assert set(report["answer_reward_statistics"]) == {"informative", "readable", "warm"}
    assert (tmp_path / "demo" / "task.jsonl").exists()
    accuracy = report["held_out_accuracy"]
    assert set(accuracy) == {"base", "expert:informative", "expert:readable", "expert:warm", "linear:uniform",
                             "mgda_decoupled"}
    assert all(set(row) == {"informative", "readable", "warm"} for row in accuracy.values())
    assert (tmp_path / "demo" / "models" / "mgda_decoupled" / "final" / "adapter_config.json").exists()
    front = json.loads((tmp_path / "demo" / "front" / "report.json").read_text())
    assert set(front["methods"]) == {"linear_scalarisation", "rewarded_soup", "hoe", "mgda_decoupled", "base"}
    grid = [p["preference"] for p in front["methods"]["rewarded_soup"]["points"]]
    # HoE's vertices are the experts alone, as the soup's are; its centre is the merged anchor expert
    hoe_points, soup_points = front["methods"]["hoe"]["points"], front["methods"]["rewarded_soup"]["points"]
    for hoe_point, soup_point in zip(hoe_points, soup_points):
        assert hoe_point["preference"] == soup_point["preference"]
        if max(hoe_point["preference"]) == 1.0:
            assert hoe_point["scores"] == pytest.approx(soup_point["scores"])
    assert (tmp_path / "demo" / "hoe" / "build_report.json").exists()
    assert len(grid) == 4 and sorted(p["preference"] for p in front["methods"]["linear_scalarisation"]["points"]) == sorted(grid)
    assert (tmp_path / "demo" / "front" / "front_informative_readable.png").stat().st_size > 5000
    assert str((tmp_path / "demo").resolve()) in out.stdout


def test_train_dpo_from_yaml_with_overrides(tiny_model_path, tmp_path):
    cfg = tmp_path / "dpo.yaml"
    cfg.write_text(f"model: {tiny_model_path}\ntask: synthetic\nobjectives: [informative, warm]\nmax_steps: 50\n"
                   f"per_device_batch_size: 4\nmax_length: 64\nmax_prompt_length: 24\noutput_dir: {tmp_path / 'run'}\n")
    out = moalign("train", "dpo", "--config", cfg, "--max_steps", "3", "--rule", "pcgrad", "--logging_steps", "1")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "final" / "moalign_training.json").read_text())
    assert summary["steps"] == 3 and summary["rule"] == "pcgrad"
    assert (tmp_path / "run" / "final" / "adapter_config.json").exists()
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "lr" in r] == [1, 2, 3]
    assert {"informative/weight", "warm/accuracy", "grad_norm"} <= set(next(r for r in logged if "lr" in r))
    assert [r["step"] for r in logged if "eval" in r] == [0, 3]  # before the first step and after the last
    bad = moalign("train", "dpo", "--config", cfg, "--rule", "nope")
    assert bad.returncode == 2 and "unknown rule 'nope'" in bad.stderr
