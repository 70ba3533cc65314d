import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from moalign.models import build_tiny_model, generate_responses, load_model, load_tokenizer


def test_tiny_model_and_tokenizer_round_trip_through_auto_classes(tiny_model_path, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    assert model.config.model_type == "llama"
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|eos|>"
    assert tok.pad_token_id != tok.eos_token_id
    rendered = tok.apply_chat_template([{"role": "user", "content": "hello cat"}], add_generation_prompt=True, tokenize=False)
    assert rendered == "<|user|>hello cat<|eos|><|assistant|>"
    text = "A friend helps the team today."
    assert tok.decode(tok(text)["input_ids"]) == text

    model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(tmp_path / "copy").get_vocab() == tok.get_vocab()


def test_build_is_seeded_and_cached_and_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_model(build_tiny_model(tmp_path / "a", seed=3))
    assert torch.equal(torch.rand(3), expected)
    b = load_model(build_tiny_model(tmp_path / "b", seed=3))
    c = load_model(build_tiny_model(tmp_path / "c", seed=4))
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    stamp = (tmp_path / "a" / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(tmp_path / "a", seed=3)
    assert (tmp_path / "a" / "model.safetensors").stat().st_mtime_ns == stamp


def test_sampled_generation_is_reproducible_and_leaves_tokenizer_and_global_rng_alone(tiny_model_path):
    import torch

    model, tok = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    prompts = ["Explain the river.", [{"role": "user", "content": "Hi"}], "Give advice."]
    kw = dict(max_new_tokens=8, temperature=1.0, batch_size=2)
    state = torch.get_rng_state()
    first = generate_responses(model, tok, prompts, seed=1, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == generate_responses(model, tok, prompts, seed=1, **kw)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert tok.padding_side == "right"


def test_generation_leaves_the_tokenizer_alone_and_batches_answer_as_single_prompts(tiny_model_path):
    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)  # right padding, as loaded
    prompts = ["hello cat", "the dog runs far away from the big red house today", "why"]
    batched = generate_responses(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    assert tokenizer.padding_side == "right"  # shared tokenizers are never changed
    assert batched == [generate_responses(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]


def test_greedy_decoding_equals_transformers_generate(tiny_model_path):
    """moalign's decoding loop against transformers' own ``generate`` on a left-padded batch (an independent
    implementation), and sampling per row: a prompt's sampled answer does not depend on its batch."""
    from moalign.models.generation import left_pad, render_prompt

    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    prompts = ["hello cat", "the dog runs far away from the big red house today", "why"]
    ids, mask = left_pad([tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts],
                         tokenizer.pad_token_id)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    expected = [t.strip() for t in tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)]
    assert generate_responses(model, tokenizer, prompts, max_new_tokens=10, batch_size=3) == expected
    sampled = generate_responses(model, tokenizer, prompts, max_new_tokens=10, temperature=1.0, seed=7, batch_size=3)
    assert generate_responses(model, tokenizer, prompts[1:2], max_new_tokens=10, temperature=1.0, seed=8) == sampled[1:2]
