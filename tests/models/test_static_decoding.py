"""Static-cache decoding computes what the growing-cache decoding computes: the same scores at every step and the
same tokens, for a plain model on three architectures, HoE with a trained-looking router and mixed preferences per
row, and MOD; the step a CUDA graph records reads nothing back to the host; and it refuses what it cannot do
(CUDA graphs off CUDA, decoding past its cache, a transformers whose cache wants positions from the host)."""

import numpy as np
import pytest
import torch

from helpers import make_expert, tiny_architecture
from moalign.hoe import HoEModel, expert_from_adapter
from moalign.hoe.mod import mod_step
from moalign.models import load_model, load_tokenizer
from moalign.models.decoding import decode, model_step
from moalign.models.generation import left_pad, render_prompt
from moalign.models.static_decoding import static_model_step

PROMPTS = ["hello cat", "the dog runs far away from the big red house today", "why"]
BUDGETS = [9, 4, 7]


def recording(step):
    """``step`` that also keeps the scores it returns."""
    seen = []

    def wrapped(*args):
        scores, cache = step(*args)
        seen.append(scores.detach().float().clone())
        return scores, cache

    return wrapped, seen


def both_ways(make_step, input_ids, attention_mask, pad, **settings):
    """Decode once with ``make_step(None)`` (growing cache) and once with ``make_step(budget)`` (static cache);
    return both token lists and both score sequences."""
    results = []
    for budget in (None, max(BUDGETS)):
        step, seen = recording(make_step(budget))
        tokens = decode(step, input_ids, attention_mask, max_new_tokens=BUDGETS, eos_token_ids=[], pad_token_id=pad,
                        **settings)
        results.append((tokens, seen))
    return results


def assert_same(results):
    (dynamic_tokens, dynamic_scores), (static_tokens, static_scores) = results
    assert static_tokens == dynamic_tokens
    assert len(static_scores) == len(dynamic_scores) == max(BUDGETS)
    for dynamic, static in zip(dynamic_scores, static_scores):
        torch.testing.assert_close(static, dynamic, rtol=1e-4, atol=1e-4)


def tiny_batch(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    rows = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]
    return (*left_pad(rows, tokenizer.pad_token_id), tokenizer.pad_token_id)


def test_static_decoding_equals_dynamic_for_a_left_padded_batch_greedy_and_sampled(tiny_model_path):
    model = load_model(tiny_model_path)
    ids, mask, pad = tiny_batch(tiny_model_path)
    assert bool((mask == 0).any())  # left padding is exercised

    def make(budget):
        return model_step(model) if budget is None else static_model_step(model, budget)

    assert_same(both_ways(make, ids, mask, pad))
    assert_same(both_ways(make, ids, mask, pad, temperature=[0.0, 1.0, 0.8], top_p=0.9, seeds=[1, 2, 3], top_k=20))


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_static_decoding_equals_dynamic_on_other_architectures(kind):
    model = tiny_architecture(kind)
    ids = torch.randint(1, 100, (3, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :4] = 0
    ids = ids.masked_fill(mask == 0, 0)

    def make(budget):
        return model_step(model) if budget is None else static_model_step(model, budget)

    assert_same(both_ways(make, ids, mask, 0))


@pytest.fixture(scope="module")
def hoe_with_router(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("static-experts")
    dirs = [make_expert(tiny_model_path, root / f"e{k}", seed=60 + k, scale=0.3) for k in range(3)]
    experts = [expert_from_adapter(n, np.eye(3)[k], d) for k, (n, d) in enumerate(zip("abc", dirs))]
    hoe = HoEModel.from_experts(load_model(tiny_model_path), experts, list("abc"))
    index = hoe.add_router([0.5, 0.5, 0.0])
    with torch.no_grad():  # a router whose weights depend on each token
        for p in hoe.routers[str(index)].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    return hoe


def test_static_decoding_of_hoe_with_a_router_and_a_preference_per_row_equals_dynamic(hoe_with_router, tiny_model_path):
    hoe = hoe_with_router
    ids, mask, pad = tiny_batch(tiny_model_path)
    preferences = [[0.4, 0.6, 0.0], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]]

    def make(budget):
        weights = hoe.mixing_weights(preferences, batch=3)
        if budget is None:
            return model_step(hoe, mixing_weights=weights)
        return static_model_step(hoe, budget, mixing_weights=weights)

    assert_same(both_ways(make, ids, mask, pad))


def test_mod_over_static_expert_steps_equals_mod_over_dynamic_ones(hoe_with_router, tiny_model_path):
    hoe = hoe_with_router
    ids, mask, pad = tiny_batch(tiny_model_path)
    preferences = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])

    def make(budget):
        if budget is None:
            return mod_step(hoe, preferences)
        return mod_step(hoe, preferences, lambda w: static_model_step(hoe, budget, mixing_weights=w))

    assert_same(both_ways(make, ids, mask, pad))


def test_static_decoding_refuses_what_it_cannot_do(tiny_model_path):
    model = load_model(tiny_model_path)
    ids, mask, pad = tiny_batch(tiny_model_path)
    with pytest.raises(ValueError, match="CUDA graphs need the model on a CUDA device; it is on cpu"):
        static_model_step(model, 4, cuda_graph=True)
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        static_model_step(model, 0)
    with pytest.raises(TypeError, match="pass config="):
        static_model_step(torch.nn.Sequential(model), 4)  # a wrapper with neither a config nor a base model
    with pytest.raises(ValueError, match="decoding past the static cache's .* max_new_tokens=3"):
        decode(static_model_step(model, 3), ids, mask, max_new_tokens=5, eos_token_ids=[], pad_token_id=pad)


def test_hoe_and_mod_generate_with_a_static_cache_answer_as_with_a_growing_one(hoe_with_router, tiny_model_path):
    from moalign.hoe.mod import mod_generate

    tokenizer = load_tokenizer(tiny_model_path)
    preferences = [[0.4, 0.6, 0.0], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]]
    settings = dict(tokenizer=tokenizer, max_new_tokens=8, temperature=0.9, seed=4, batch_size=2)
    for generate in (hoe_with_router.generate, lambda *a, **k: mod_generate(hoe_with_router, *a, **k)):
        assert generate(PROMPTS, preferences, decoding="static", **settings) == generate(PROMPTS, preferences, **settings)


def test_a_transformers_whose_static_cache_needs_positions_from_the_host_is_refused(tiny_model_path, monkeypatch):
    import transformers

    from moalign.models.static_decoding import DecodingError

    class OldStaticCache:  # transformers 5.0 and 4.57: the layers take cache_position from the forward instead
        def __init__(self, config, max_cache_len):
            self.layers = [object()]

    monkeypatch.setattr(transformers, "StaticCache", OldStaticCache)
    model = load_model(tiny_model_path)
    ids, mask, pad = tiny_batch(tiny_model_path)
    with pytest.raises(DecodingError, match="use decoding 'dynamic'"):
        decode(static_model_step(model, 3), ids, mask, max_new_tokens=3, eos_token_ids=[], pad_token_id=pad)


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


#: operators a CUDA graph cannot record: reads of a tensor's value by the host, outputs shaped by data, and tensors
#: made from host data (a copy to the GPU)
NOT_CAPTURABLE = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique_consecutive",
                  "aten::_unique2", "aten::item", "aten::equal", "aten::is_nonzero", "aten::lift_fresh"}


@pytest.mark.parametrize("kind", ["llama", "hoe", "anchor_policy", "gpt2", "qwen2"])
def test_the_step_a_cuda_graph_records_reads_nothing_back_to_the_host(kind, tiny_model_path, hoe_with_router):
    from moalign.hoe.train_routers import AnchorPolicy

    forward_kwargs = {}
    if kind == "llama":
        model = load_model(tiny_model_path)
    elif kind == "anchor_policy":  # router training's policy, as CUDA-graph rollouts would decode it
        model = AnchorPolicy(hoe_with_router, [0.5, 0.5, 0.0])
    elif kind == "hoe":
        model = hoe_with_router
        forward_kwargs = dict(mixing_weights=model.mixing_weights([[0.4, 0.6, 0.0], [0.1, 0.1, 0.8], [1, 0, 0]],
                                                                   batch=3))
    else:
        model = tiny_architecture(kind)
    ids = torch.randint(3, 100, (3, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    step = static_model_step(model, 4, **forward_kwargs)
    _, state = step(ids, mask, positions, None)
    new_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], -1)
    state(ids[:, -1:], new_mask, positions[:, -1:] + 1, state)  # a decoding step, run eagerly
    with torch.no_grad(), _Ops() as ops:
        state.forward(state.ids, state.positions)  # what capture() records
    assert ops.names and not NOT_CAPTURABLE & set(ops.names), sorted(NOT_CAPTURABLE & set(ops.names))
