import pytest
import torch

from moalign.data import Label, PreferenceCollator, make_pair
from moalign.models import load_model, sequence_logprobs

PAIRS = [
    make_pair("Explain the river.", "The river runs to the sea.", "Water.", {"long": "a", "short": "b"}),
    make_pair([{"role": "user", "content": "Say hi."}], "Hi!", "Hello there, friend!", {"short": "tie"}),
    make_pair("A much longer prompt about the old book and the garden and the city.", "Yes.", "No, it is not.", {"long": "b"}),
]


def reference_logprob(model, prompt_ids, response_ids):
    """log p(response | prompt) from one unpadded sequence, token by token."""
    ids = torch.tensor([prompt_ids + response_ids])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[t - 1, ids[0, t]] for t in range(len(prompt_ids), ids.shape[1]))


def test_batch_layout_masks_and_labels(tiny_tokenizer):
    collator = PreferenceCollator(tiny_tokenizer, ["long", "short"], max_length=64, max_prompt_length=32)
    batch = collator(PAIRS)
    n = len(PAIRS)
    assert batch["input_ids"].shape[0] == 2 * n
    assert batch["labels"].tolist() == [[1, -1], [0, 0], [-1, 0]]
    assert batch["label_mask"].tolist() == [[True, True], [False, True], [True, False]]
    for i, pair in enumerate(PAIRS):
        prompt_ids = collator.encode_prompt(pair.prompt)
        for row, text in ((i, pair.response_a), (n + i, pair.response_b)):
            ids, attn, resp = batch["input_ids"][row], batch["attention_mask"][row], batch["response_mask"][row]
            length = int(attn.sum())
            assert ids[: len(prompt_ids)].tolist() == prompt_ids  # both responses share the prompt
            assert resp[: len(prompt_ids)].sum() == 0 and resp[length:].sum() == 0
            assert ids[len(prompt_ids):length].tolist() == collator.encode_response(text)
            assert ids[length - 1] == tiny_tokenizer.eos_token_id
            assert (ids[length:] == tiny_tokenizer.pad_token_id).all()
    chat_prompt = tiny_tokenizer.decode(collator.encode_prompt(PAIRS[1].prompt))
    assert chat_prompt == "<|user|>Say hi.<|eos|><|assistant|>"


def test_sequence_logprobs_match_a_per_example_reference(tiny_model_path, tiny_tokenizer):
    torch.manual_seed(0)
    model = load_model(tiny_model_path)
    collator = PreferenceCollator(tiny_tokenizer, ["long", "short"], max_length=64, max_prompt_length=32)
    batch = collator(PAIRS)
    got = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    n = len(PAIRS)
    for i, pair in enumerate(PAIRS):
        prompt_ids = collator.encode_prompt(pair.prompt)
        for row, text in ((i, pair.response_a), (n + i, pair.response_b)):
            want = reference_logprob(model, prompt_ids, collator.encode_response(text))
            assert got[row].item() == pytest.approx(want.item(), abs=1e-4)


def test_truncation_keeps_the_end_of_the_prompt_and_the_start_of_the_response(tiny_tokenizer):
    long_prompt = " ".join(["word"] * 200)
    pair = make_pair(long_prompt + " FINAL", "start " + "x " * 200, "short", {"o": Label.A})
    collator = PreferenceCollator(tiny_tokenizer, ["o"], max_length=40, max_prompt_length=16)
    batch = collator([pair])
    assert batch["input_ids"].shape[1] == 40
    prompt_ids = collator.encode_prompt(pair.prompt)
    assert len(prompt_ids) == 16 and tiny_tokenizer.decode(prompt_ids).endswith("FINAL")
    first_response = batch["input_ids"][0, 16:].tolist()
    assert tiny_tokenizer.decode(first_response).startswith("start")
    assert int(batch["response_mask"][0].sum()) == 24


def test_collator_rejects_bad_settings(tiny_tokenizer):
    with pytest.raises(ValueError, match="max_prompt_length"):
        PreferenceCollator(tiny_tokenizer, ["o"], max_length=16, max_prompt_length=16)
