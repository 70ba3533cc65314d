import gzip
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moalign.data import DataError, Label, PreferenceDataset, load_preference_data, make_pair, save_preference_data


def sample_dataset():
    return PreferenceDataset(
        [
            make_pair("Describe the sea.", "Blue.", "Vast salt water.", {"concise": "a", "informative": "b"}),
            make_pair([{"role": "user", "content": "Say hi."}], "Hi!", "Hello there!", {"concise": "tie"},
                      {"warm": 0.1}, {"warm": 0.8}),
        ]
    )


def write_jsonl(path, records, opener=open):
    with opener(path, "wt") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def test_native_jsonl_round_trip(tmp_path):
    ds = sample_dataset()
    back = load_preference_data(save_preference_data(ds, tmp_path / "d.jsonl"))
    assert back.pairs == ds.pairs and back.objectives == ("concise", "informative", "warm")


@pytest.mark.parametrize("kind", ["jsonl.gz", "json", "parquet", "datasets"])
def test_every_container_format_reads_the_same_pairs(tmp_path, kind):
    records = sample_dataset().to_records()
    if kind == "jsonl.gz":
        path = write_jsonl(tmp_path / "d.jsonl.gz", records, gzip.open)
    elif kind == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(records))
    else:
        flat = [
            {"prompt": json.dumps(r["prompt"]) if isinstance(r["prompt"], list) else r["prompt"],
             "response_a": r["response_a"], "response_b": r["response_b"],
             "label_concise": r["labels"].get("concise"), "label_informative": r["labels"].get("informative")}
            for r in records
        ]
        for row in flat:
            if row["prompt"].startswith("["):
                row["prompt"] = "Say hi."
        if kind == "parquet":
            path = tmp_path / "d.parquet"
            pq.write_table(pa.Table.from_pylist(flat), path)
        else:
            path = tmp_path / "saved"
            datasets.Dataset.from_list(flat).save_to_disk(str(path))
        ds = load_preference_data(path)
        assert [p.labels for p in ds] == [{"concise": Label.A, "informative": Label.B}, {"concise": Label.TIE}]
    if kind in ("jsonl.gz", "json"):  # the native formats keep everything, chat prompts and scores included
        assert load_preference_data(path).pairs == sample_dataset().pairs


def test_flat_csv_columns(fixtures):
    ds = load_preference_data(fixtures / "native.csv")
    assert ds.objectives == ("concise", "informative", "warm")
    assert ds[0].labels == {"concise": Label.A, "informative": Label.B}
    assert ds[1].labels == {"concise": Label.TIE, "warm": Label.B}
    assert ds[1].scores_b == {"warm": 0.8}


def test_native_fixture_with_absent_labels(fixtures):
    ds = load_preference_data(fixtures / "native.jsonl")
    assert ds[2].labels == {"concise": Label.B}
    assert ds[1].prompt == [{"role": "user", "content": "Say hi."}]


GOOD = {"prompt": "q", "response_a": "a", "response_b": "b", "labels": {"o": "a"}}


@pytest.mark.parametrize(
    "bad_row, field, message",
    [
        ({"prompt": "q", "response_a": "a", "labels": {"o": "a"}}, "response_b", "missing column"),
        ({**GOOD, "prompt": ""}, "prompt", "prompt is empty"),
        ({**GOOD, "response_a": " "}, "response_a", "response is empty"),
        ({**GOOD, "labels": {"o": "left"}}, "labels.o", "unknown label"),
        ({**GOOD, "labels": {}}, "labels", "no label"),
        ({**GOOD, "labels": "a"}, "labels", "must be a mapping"),
        ({**GOOD, "labels": {}, "scores_a": {"o": float("nan")}, "scores_b": {"o": 1}}, "scores_a.o", "nan"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, bad_row, field, message):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, bad_row, GOOD])
    with pytest.raises(DataError) as err:
        load_preference_data(path)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 2, field)
    assert message in str(err.value)
    kept = load_preference_data(path, drop_invalid=True)
    assert len(kept) == 3 and kept.dropped == 1


def test_malformed_json_line_and_missing_or_unknown_files(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(DataError, match=r"d.jsonl, row 1: invalid JSON"):
        load_preference_data(path)
    with pytest.raises(DataError, match="file not found"):
        load_preference_data(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_preference_data(tmp_path / "d.txt")
    with pytest.raises(DataError, match="unknown adapter 'shp'"):
        load_preference_data(path, adapter="shp")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no valid preference pairs"):
        load_preference_data(empty)
    not_saved = tmp_path / "dir"
    not_saved.mkdir()
    with pytest.raises(DataError, match="not a saved `datasets` dataset"):
        load_preference_data(not_saved)


def test_duplicate_objective_names_are_rejected(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(DataError, match="duplicate objective"):
        load_preference_data(path, objectives=["o", "o"])
