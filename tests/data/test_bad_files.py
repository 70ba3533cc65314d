"""Bad or unusual files: a clear error naming the file and row, or a documented acceptance; never a traceback."""

import gzip
import json

import pytest

from moalign.data import DataError, load_preference_data, summarize

ROW = {"prompt": "p", "response_a": "a", "response_b": "b", "labels": {"helpful": "a"}}


def lines(n=3):
    return "".join(json.dumps({**ROW, "prompt": f"p{i}"}) + "\n" for i in range(n))


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + lines().encode())
    assert len(load_preference_data(path)) == 3
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbfprompt,response_a,response_b,label_helpful\np,a,b,a\n")
    assert load_preference_data(csv)[0].prompt == "p"


def test_non_utf8_names_the_file_and_row(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(lines(2).encode() + json.dumps({**ROW, "prompt": "caf\u00e9"}, ensure_ascii=False).encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin1.jsonl.*row 2.*not UTF-8"):
        load_preference_data(path)


@pytest.mark.parametrize("content", [b"not gzip at all", "truncated"])
def test_a_fake_or_truncated_gz_is_a_clear_error(tmp_path, content):
    path = tmp_path / "data.jsonl.gz"
    if content == "truncated":
        content = gzip.compress(lines(50).encode())[:-30]
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"data.jsonl.gz.*truncated, or not really gzip"):
        load_preference_data(path)


def test_a_malformed_json_line_is_skipped_and_counted_under_drop_invalid(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(lines(2) + '{"prompt": "p", \n' + lines(1))
    with pytest.raises(DataError, match=r"row 2.*invalid JSON"):
        load_preference_data(path)
    data = load_preference_data(path, drop_invalid=True)
    assert len(data) == 3 and data.dropped == 1


def test_a_missing_local_path_does_not_go_to_the_hub(tmp_path, monkeypatch):
    import datasets

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("asked the Hub for a local path"))
    with pytest.raises(DataError, match="file not found"):
        load_preference_data("data/train")  # looks like a Hub name "owner/name", but data/ is a local folder


def test_a_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"owner/name.*not loadable from the Hugging Face Hub \(ConnectionError"):
        load_preference_data("owner/name")


def test_unknown_adapter_options_are_rejected(fixtures):
    with pytest.raises(DataError, match=r"adapter 'hh_rlhf' has no option\(s\) \['objectve'\]; its options are"):
        load_preference_data(fixtures / "hh_rlhf.jsonl", adapter="hh_rlhf", objectve="harmless")


def test_hh_pairs_with_identical_answers_are_ties(tmp_path):
    dialogue = "\n\nHuman: hi\n\nAssistant: hello"
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": dialogue, "rejected": dialogue}) + "\n"
                    + json.dumps({"chosen": dialogue, "rejected": dialogue[:-1]}) + "\n")
    data = load_preference_data(path, adapter="hh_rlhf", objective="harmless")
    counts = summarize(data)["objectives"]["harmless"]
    assert counts["tie"] == 1 and counts["a"] == 1
