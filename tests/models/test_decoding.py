"""Per-row decoding settings (what a server batching different requests needs): each row of a mixed batch
decodes exactly as it would alone with its own settings."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.models import load_model, load_tokenizer
from moalign.models.decoding import decode, filter_top_p, model_step
from moalign.models.generation import left_pad, render_prompt

PROMPTS = ["hello cat", "the dog runs far away from the big red house today", "why", "tell me about the river"]


def _batch(tokenizer, prompts):
    rows = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    return left_pad(rows, tokenizer.pad_token_id)


@given(st.lists(st.floats(0.05, 1.5), min_size=1, max_size=5), st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_per_row_top_p_equals_each_rows_own_scalar_top_p(top_ps, seed):
    logits = torch.randn(len(top_ps), 50, generator=torch.Generator().manual_seed(seed))
    rows = filter_top_p(logits, torch.tensor(top_ps)[:, None])
    for i, p in enumerate(top_ps):
        alone = logits[i:i + 1] if p >= 1.0 else filter_top_p(logits[i:i + 1], torch.tensor([[p]]))
        assert torch.equal(rows[i:i + 1], alone)
        kept = torch.isfinite(rows[i])
        if p < 1.0:  # the kept set is the smallest prefix of the sorted distribution reaching p
            probs = torch.softmax(logits[i], -1)
            assert float(probs[kept].sum()) >= min(p, 1.0) - 1e-6
            assert float(probs[kept].sum() - probs[kept].min()) < p + 1e-6
        else:
            assert bool(kept.all())


def test_each_row_of_a_batch_with_mixed_settings_decodes_as_it_would_alone(tiny_model_path):
    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    temperatures, top_ps, budgets, seeds = [0.0, 1.0, 0.7, 1.3], [1.0, 0.9, 0.5, 1.0], [12, 3, 9, 7], [0, 5, 9, 2]
    ids, mask = _batch(tokenizer, PROMPTS)
    common = dict(eos_token_ids=[tokenizer.eos_token_id], pad_token_id=tokenizer.pad_token_id, top_k=20)
    batched = decode(model_step(model), ids, mask, max_new_tokens=budgets, temperature=temperatures, top_p=top_ps,
                     seeds=seeds, **common)
    for i, prompt in enumerate(PROMPTS):
        one_ids, one_mask = _batch(tokenizer, [prompt])
        alone = decode(model_step(model), one_ids, one_mask, max_new_tokens=budgets[i], temperature=temperatures[i],
                       top_p=top_ps[i], seeds=[seeds[i]], **common)[0]
        assert batched[i] == alone, i
        assert len(alone) <= budgets[i]
    assert len(batched[1]) == 3  # a short budget ends its row without ending the others


def test_the_token_hook_sees_every_token_and_ends_its_row(tiny_model_path):
    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    ids, mask = _batch(tokenizer, PROMPTS[:2])
    common = dict(eos_token_ids=[], pad_token_id=tokenizer.pad_token_id, max_new_tokens=10)
    full = decode(model_step(model), ids, mask, **common)
    seen: list[tuple[int, list[int]]] = []

    def hook(row: int, tokens: list[int]) -> bool:
        seen.append((row, list(tokens)))
        return row == 0 and len(tokens) == 4

    cut = decode(model_step(model), ids, mask, on_token=hook, **common)
    assert cut == [full[0][:4], full[1]]
    assert [tokens for row, tokens in seen if row == 1] == [full[1][:n] for n in range(1, 11)]


def test_chat_prompts_without_a_chat_template_render_as_reward_models_read_them(tiny_model_path):
    from moalign.models.generation import render_conversation

    tokenizer = load_tokenizer(tiny_model_path)
    tokenizer.chat_template = None  # a fresh copy: shared tokenizers are never changed
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello cat"}]
    rendered = render_prompt(tokenizer, turns)
    assert rendered == "system: Be brief.\nuser: hello cat\nassistant: "
    assert render_conversation(tokenizer, turns, "meow") == rendered + "meow"
    assert render_prompt(tokenizer, "hello cat") == "hello cat"


def test_a_process_done_early_keeps_stepping_until_every_process_is_done(tiny_model_path):
    """Synced decoding (a sharded model: every forward a collective): this process's rows end after a few tokens but
    other processes are not done, so it steps on to the common budget, its outputs unchanged."""
    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    ids, mask = _batch(tokenizer, PROMPTS[:2])
    common = dict(eos_token_ids=[], pad_token_id=tokenizer.pad_token_id, max_new_tokens=10, temperature=1.0, seeds=[3, 4])
    alone = decode(model_step(model), ids, mask, on_token=lambda row, tokens: len(tokens) == 2 + row, **common)
    forwards, asked = [], []
    step = model_step(model)

    def counted(*args):
        forwards.append(1)
        return step(*args)

    def others_busy_for(steps):
        def all_done(done_here):
            asked.append(done_here)
            return done_here and len(asked) > steps
        return all_done

    synced = decode(counted, ids, mask, on_token=lambda row, tokens: len(tokens) == 2 + row,
                    all_done=others_busy_for(6), **common)
    assert synced == alone and [len(t) for t in synced] == [2, 3]
    assert len(forwards) == 6 and asked[:3] == [False] * 3 and all(asked[3:])


def test_the_cache_is_passed_under_the_name_this_transformers_takes(tiny_model_path):
    """transformers 5.25 renamed ``past_key_values`` to ``cache`` (the old name goes in 5.40): decoding uses the
    name the installed version declares, so it neither warns now nor breaks when the old name is removed."""
    import warnings

    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    ids, mask = _batch(tokenizer, PROMPTS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        decode(model_step(model), ids, mask, max_new_tokens=4, eos_token_ids=[tokenizer.eos_token_id],
               pad_token_id=tokenizer.pad_token_id)
