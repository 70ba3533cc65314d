import json

import pytest

from moalign.data import DataError, Label, hh_prompt_to_messages, load_preference_data, split_hh_dialogue


def test_pku_saferlhf(fixtures):
    ds = load_preference_data(fixtures / "pku_saferlhf.jsonl", adapter="pku_saferlhf")
    assert ds.objectives == ("helpful", "harmless")
    assert ds[0].labels == {"helpful": Label.B, "harmless": Label.A}
    assert ds[1].labels == {"helpful": Label.A, "harmless": Label.B}
    assert ds[0].response_b.startswith("Insert a tension wrench")


def test_pku_rejects_bad_ids(fixtures, tmp_path):
    rows = [json.loads(line) for line in open(fixtures / "pku_saferlhf.jsonl")]
    rows[1]["safer_response_id"] = 2
    path = tmp_path / "pku.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="row 1, field 'safer_response_id': expected 0 or 1"):
        load_preference_data(path, adapter="pku_saferlhf")


def test_ultrafeedback_all_pairs_per_aspect(fixtures):
    ds = load_preference_data(fixtures / "ultrafeedback.jsonl", adapter="ultrafeedback")
    assert len(ds) == 3  # three completions -> three pairs
    assert ds.objectives == ("helpfulness", "honesty", "instruction_following", "truthfulness")
    first, second, third = ds
    assert first.labels == {a: Label.A for a in ds.objectives}
    assert second.labels == {"helpfulness": Label.A, "honesty": Label.TIE, "truthfulness": Label.A}
    assert "instruction_following" not in second.labels  # "N/A" rating leaves it absent
    assert third.labels == {"helpfulness": Label.TIE, "honesty": Label.B, "truthfulness": Label.B}
    assert first.scores_a["helpfulness"] == 5.0


def test_helpsteer2_consecutive_rows(fixtures, tmp_path):
    ds = load_preference_data(fixtures / "helpsteer2.jsonl", adapter="helpsteer2")
    assert len(ds) == 2
    assert ds[0].labels == {"helpfulness": Label.A, "correctness": Label.A, "coherence": Label.TIE,
                            "complexity": Label.A, "verbosity": Label.A}
    assert ds[1].labels["verbosity"] is Label.B and ds[1].labels["helpfulness"] is Label.TIE
    rows = [json.loads(line) for line in open(fixtures / "helpsteer2.jsonl")]
    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join(json.dumps(r) for r in rows[:3]))
    with pytest.raises(DataError, match="row 2.*no partner"):
        load_preference_data(odd, adapter="helpsteer2")
    rows[1]["prompt"] = "something else"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="different prompts"):
        load_preference_data(mixed, adapter="helpsteer2")


def test_hh_rlhf_fixture(fixtures):
    ds = load_preference_data(fixtures / "hh_rlhf.jsonl", adapter="hh_rlhf", objective="harmless")
    assert ds.objectives == ("harmless",)
    assert ds[0].prompt == [{"role": "user", "content": "What is a good name for a cat?"}]
    assert ds[0].response_a == "Whiskers or Luna are popular choices." and ds[0].response_b == "Cat."
    assert ds[1].prompt == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a fact."},
    ]
    raw = load_preference_data(fixtures / "hh_rlhf.jsonl", adapter="hh_rlhf", conversational=False)
    assert raw[0].prompt == "\n\nHuman: What is a good name for a cat?\n\nAssistant:"


def test_hh_split_uses_the_shared_prefix():
    chosen = "\n\nHuman: Q\n\nAssistant: Wait...\n\nAssistant: Fifty dollars."
    rejected = "\n\nHuman: Q\n\nAssistant: Visit a website."
    assert split_hh_dialogue(chosen, rejected) == ("\n\nHuman: Q\n\nAssistant:", "Wait...\n\nAssistant: Fifty dollars.", "Visit a website.")
    with pytest.raises(DataError, match="share no"):
        split_hh_dialogue("\n\nHuman: A", "\n\nHuman: B")
    assert hh_prompt_to_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:") == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
