"""The real HH-RLHF helpful-base and harmless-base test splits from ../shared/data."""

import gzip
import json

from moalign.data import Label, concat_datasets, load_preference_data

FILES = {"helpful": ("hh-rlhf-helpful-base-test", 2354), "harmless": ("hh-rlhf-harmless-base-test", 2312)}


def test_real_files_load_completely_with_the_prompt_split_right(shared_data):
    loaded, ties = [], {"helpful": 0, "harmless": 0}
    for objective, (folder, expected) in FILES.items():
        path = shared_data / folder / "test.jsonl.gz"
        raw = load_preference_data(path, adapter="hh_rlhf", objective=objective, conversational=False)
        records = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
        assert len(raw) == len(records) == expected and raw.dropped == 0
        for pair, record in zip(raw, records):
            assert pair.prompt.endswith("\n\nAssistant:") and pair.prompt.startswith("\n\nHuman:")
            assert record["chosen"].startswith(pair.prompt) and record["rejected"].startswith(pair.prompt)
            assert record["chosen"][len(pair.prompt):].strip() == pair.response_a
            assert record["rejected"][len(pair.prompt):].strip() == pair.response_b
            tie = record["chosen"] == record["rejected"]
            assert pair.labels == {objective: Label.TIE if tie else Label.A}
            ties[objective] += tie
        chat = load_preference_data(path, adapter="hh_rlhf", objective=objective)
        assert all(p.prompt[-1]["role"] == "user" for p in chat)
        loaded.append(chat)
    assert ties == {"helpful": 2, "harmless": 0}  # identical answers in the real files: ties, not A wins
    both = concat_datasets(loaded)
    assert both.objectives == ("helpful", "harmless") and len(both) == 4666
    _, present = both.label_matrix()
    assert present.sum(axis=0).tolist() == [2354, 2312] and (present.sum(axis=1) == 1).all()
