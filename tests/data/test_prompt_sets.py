import json

import pytest

from moalign.data import DataError, load_prompt_set


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_golden_fixture_and_plain_prompt_lists(fixtures, tmp_path):
    golden = load_prompt_set(fixtures / "golden.jsonl", require_references=True)
    assert len(golden.prompts) == len(golden.references) == 4
    assert golden.references[2] == "Red."
    plain = load_prompt_set(write(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}]))
    assert plain.prompts == ["a", "b"] and plain.references is None
    assert plain.head(1).prompts == ["a"]
    with pytest.raises(ValueError, match="at least 1"):
        plain.head(0)


def test_bad_prompt_files_name_the_row(tmp_path):
    with pytest.raises(DataError, match=r"row 1: missing prompt field 'prompt or instruction'"):
        load_prompt_set(write(tmp_path / "a.jsonl", [{"prompt": "a"}, {"text": "b"}]))
    with pytest.raises(DataError, match=r"row 0, field 'prompt': prompt must be a non-empty string"):
        load_prompt_set(write(tmp_path / "b.jsonl", [{"prompt": "  "}]))
    with pytest.raises(DataError, match=r"row 1: missing reference field 'output'"):
        load_prompt_set(write(tmp_path / "c.jsonl", [{"prompt": "a", "output": "x"}, {"prompt": "b"}]))
    with pytest.raises(DataError, match="row 1: has reference field 'output' but the first row has none"):
        load_prompt_set(write(tmp_path / "d.jsonl", [{"prompt": "a"}, {"prompt": "b", "output": "x"}]))
    with pytest.raises(DataError, match="no reference responses"):
        load_prompt_set(write(tmp_path / "e.jsonl", [{"prompt": "a"}]), require_references=True)
    with pytest.raises(DataError, match="missing reference field 'gold'"):
        load_prompt_set(write(tmp_path / "f.jsonl", [{"prompt": "a", "output": "x"}]), reference_field="gold")


def test_real_alpaca_eval_files_agree(shared_data):
    folder = shared_data / "alpaca-eval"
    davinci = load_prompt_set(folder / "alpaca_eval.jsonl", require_references=True)
    gpt4 = load_prompt_set(folder / "gpt4_1106_preview_outputs.json", require_references=True)
    assert len(davinci.prompts) == len(gpt4.prompts) == 805
    assert davinci.prompts == gpt4.prompts
    assert davinci.references != gpt4.references
