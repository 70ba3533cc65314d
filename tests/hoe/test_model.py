"""HoEModel: the mixed-preference batch against PEFT's exact per-row adapter, one-hot generation against the
expert alone, save/load and LoRA export round trips, thread safety, and bad input."""

import threading

import numpy as np
import pytest
import torch
from peft import PeftModel

from helpers import make_expert
from moalign.hoe import HoEError, HoEModel, expert_from_adapter, expert_from_finetuned
from moalign.models import generate_responses, load_model, load_tokenizer
from moalign.preference import PreferenceError

OBJECTIVES = ["a", "b", "c"]
PROMPTS = ["Tell me a story", "Why is the sky blue? Explain briefly.", "hi"]


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    return [make_expert(tiny_model_path, root / f"e{k}", seed=20 + k, scale=0.3) for k in range(3)]


@pytest.fixture()
def hoe(tiny_model_path, adapter_dirs):
    experts = [expert_from_adapter(name, np.eye(3)[k], d) for k, (name, d) in enumerate(zip(OBJECTIVES, adapter_dirs))]
    return HoEModel.from_experts(load_model(tiny_model_path), experts, OBJECTIVES, base_model=str(tiny_model_path),
                                 tokenizer=load_tokenizer(tiny_model_path))


def weighted_peft(tiny_model_path, adapter_dirs, weights):
    """PEFT's own exact combination (``cat``: the adapters side by side, each scaled by its weight)."""
    model = PeftModel.from_pretrained(load_model(tiny_model_path), str(adapter_dirs[0]), adapter_name="e0")
    for k, path in enumerate(adapter_dirs[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"e{k}")
    names = [f"e{k}" for k, w in enumerate(weights) if w > 0]
    model.add_weighted_adapter(names, [float(weights[int(n[1:])]) for n in names], "mix", combination_type="cat")
    model.set_adapter("mix")
    return model.eval()


def test_each_row_of_a_mixed_batch_equals_its_weighted_adapter_alone(hoe, tiny_model_path, adapter_dirs):
    preferences = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    ids = torch.randint(3, 500, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = hoe(input_ids=ids, preference=preferences).logits
    for row, preference in enumerate(preferences):
        with torch.no_grad():
            alone = weighted_peft(tiny_model_path, adapter_dirs, preference)(input_ids=ids[row:row + 1]).logits
        torch.testing.assert_close(batched[row:row + 1], alone, rtol=1e-4, atol=1e-5)
    # the mixture differs from the base model (the experts are not no-ops); zero expert weights are the base model
    with torch.no_grad():
        base = load_model(tiny_model_path)(input_ids=ids).logits
        assert not torch.allclose(batched, base, atol=1e-3)
        torch.testing.assert_close(hoe(input_ids=ids, expert_weights=torch.zeros(3)).logits, base)


def test_one_hot_preference_generates_like_the_expert_alone(hoe, tiny_model_path, adapter_dirs, tiny_tokenizer):
    expert = PeftModel.from_pretrained(load_model(tiny_model_path), str(adapter_dirs[1])).eval()
    expected = generate_responses(expert, tiny_tokenizer, PROMPTS, max_new_tokens=12, batch_size=3)
    assert hoe.generate(PROMPTS, {"b": 1.0}, max_new_tokens=12) == expected
    # rows at different preferences in one batch: each as if generated alone
    rows = [[0, 1, 0], [1, 0, 0], [0.3, 0.3, 0.4]]
    mixed = hoe.generate(PROMPTS, rows, max_new_tokens=12, temperature=1.0, seeds=[5, 6, 7])
    for i, (prompt, preference) in enumerate(zip(PROMPTS, rows)):
        assert hoe.generate([prompt], preference, max_new_tokens=12, temperature=1.0, seeds=[5 + i]) == [mixed[i]]


def test_sampling_is_seeded_per_row_and_leaves_the_global_rng_alone(hoe):
    state = torch.random.get_rng_state()
    first = hoe.generate(PROMPTS, [0.2, 0.3, 0.5], max_new_tokens=10, temperature=1.0, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert hoe.generate(PROMPTS, [0.2, 0.3, 0.5], max_new_tokens=10, temperature=1.0, seed=3) == first
    assert hoe.generate(PROMPTS, [0.2, 0.3, 0.5], max_new_tokens=10, temperature=1.0, seed=4) != first


def test_concurrent_calls_with_different_preferences_do_not_mix(hoe):
    ids = torch.randint(3, 500, (2, 7), generator=torch.Generator().manual_seed(1))
    preferences = [[1, 0, 0], [0, 0, 1], [0.5, 0.25, 0.25]]
    with torch.no_grad():
        expected = [hoe(input_ids=ids, preference=p).logits for p in preferences]
    results, errors = {}, []

    def worker(k):
        try:
            for _ in range(5):
                with torch.no_grad():
                    results[k] = hoe(input_ids=ids, preference=preferences[k]).logits
                torch.testing.assert_close(results[k], expected[k])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_save_and_load_round_trip_with_a_router(hoe, tmp_path):
    index = hoe.add_router([0.5, 0.5, 0.0])
    ids = torch.randint(3, 500, (2, 6), generator=torch.Generator().manual_seed(4))
    preferences = [[0.4, 0.6, 0.0], [0.1, 0.1, 0.8]]
    with torch.no_grad():
        untrained = hoe(input_ids=ids, preference=preferences).logits
        for p in hoe.routers[str(index)].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        assert not torch.allclose(hoe(input_ids=ids, preference=preferences).logits, untrained)  # the router acts
    hoe.save_pretrained(tmp_path / "hoe")
    loaded = HoEModel.from_pretrained(tmp_path / "hoe")
    assert loaded.config == hoe.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, preference=preferences).logits,
                                   hoe(input_ids=ids, preference=preferences).logits)
    assert loaded.generate(PROMPTS, max_new_tokens=6) == hoe.generate(PROMPTS, max_new_tokens=6)


def test_layer_weights_are_made_once_per_block_layout_and_never_go_stale():
    """Every layer of a block reads one per-rank copy of the block's weights; a block's routed weights replace
    its copy, and the fixed copy serves every block."""
    from moalign.hoe.layer import MixingWeights

    weights = MixingWeights(torch.tensor([[0.2, 0.8]]))
    owner, layout = torch.tensor([0, 0, 1]), (2, 1)
    fixed = weights.per_rank(0, owner, layout, torch.float32)
    torch.testing.assert_close(fixed, torch.tensor([[[0.2, 0.2, 0.8]]]))
    assert weights.per_rank(3, owner, layout, torch.float32) is fixed
    torch.testing.assert_close(weights.per_rank(0, torch.tensor([0, 1, 1]), (1, 2), torch.float32),
                               torch.tensor([[[0.2, 0.8, 0.8]]]))
    for routed in (torch.tensor([[[0.5, 0.5], [1.0, 0.0]]]), torch.tensor([[[0.0, 1.0], [0.3, 0.7]]])):
        weights.set_routed(0, routed)
        torch.testing.assert_close(weights.per_rank(0, owner, layout, torch.float32),
                                   routed.index_select(-1, owner))
    assert weights.per_rank(1, owner, layout, torch.float32) is fixed


def test_the_mixture_layer_runs_under_bf16_autocast_and_passes_gradients_to_its_input_and_weights():
    from torch import nn

    from moalign.hoe.layer import MixingWeights, MixtureLoraLinear, mixing

    generator = torch.Generator().manual_seed(0)
    factors = [(torch.randn(4, 16, generator=generator), torch.randn(12, 4, generator=generator)) for _ in range(2)]
    layer = MixtureLoraLinear(nn.Linear(16, 12), factors, block=0)
    x = torch.randn(3, 5, 16, generator=generator, requires_grad=True)
    fixed = torch.tensor([[0.3, 0.7], [1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    with mixing(MixingWeights(fixed=fixed)):
        exact = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lowered = layer(x)
    expected = torch.stack([nn.functional.linear(x[i], layer.base_layer.weight + sum(
        w * b @ a for w, (a, b) in zip(fixed[i], factors)), layer.base_layer.bias) for i in range(3)])
    torch.testing.assert_close(exact, expected, rtol=1e-5, atol=1e-4)
    assert lowered.dtype == torch.bfloat16
    torch.testing.assert_close(lowered.float(), exact, rtol=0.05, atol=0.3)
    lowered.float().sum().backward()
    assert x.grad is not None and fixed.grad is not None and bool(fixed.grad.abs().sum() > 0)


def test_one_set_of_mixing_weights_reused_across_forwards_with_a_router_equals_fresh_ones(hoe):
    index = hoe.add_router([0.5, 0.5, 0.0])
    with torch.no_grad():
        for p in hoe.routers[str(index)].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    preferences = [[0.4, 0.6, 0.0], [0.1, 0.1, 0.8]]
    shared = hoe.mixing_weights(preferences, batch=2)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for length in (7, 4):
            ids = torch.randint(3, 500, (2, length), generator=generator)
            torch.testing.assert_close(hoe(input_ids=ids, mixing_weights=shared).logits,
                                       hoe(input_ids=ids, preference=preferences).logits)


def test_untrained_router_weights_are_a_distribution_over_its_candidates(hoe):
    index = hoe.add_router([0.5, 0.5, 0.0], num_candidates=2)
    router = hoe.routers[str(index)]
    assert router.candidates == [0, 1]
    weights = router(0, torch.randn(2, 5, 64))
    assert torch.allclose(weights.sum(-1), torch.ones(2, 5)) and torch.all(weights[..., 2] == 0)
    # only router parameters can learn
    trainable = {n for n, p in hoe.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("routers.") for n in trainable)
    loss = hoe(input_ids=torch.tensor([[5, 6, 7]]), preference=[0.5, 0.5, 0.0]).logits.square().mean()
    loss.backward()
    assert all(p.grad is not None for p in router.parameters())


def test_exported_lora_loads_in_peft_and_matches(hoe, tiny_model_path, tmp_path):
    preference = [0.6, 0.0, 0.4]
    hoe.export_lora(preference, tmp_path / "lora")
    peft_model = PeftModel.from_pretrained(load_model(tiny_model_path), str(tmp_path / "lora")).eval()
    ids = torch.randint(3, 500, (2, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids).logits, hoe(input_ids=ids, preference=preference).logits,
                                   rtol=1e-4, atol=1e-5)


def test_expert_from_a_fine_tuned_model_reproduces_it(tiny_model_path, adapter_dirs, tmp_path):
    finetuned = PeftModel.from_pretrained(load_model(tiny_model_path), str(adapter_dirs[2])).merge_and_unload()
    expert, dropped = expert_from_finetuned("c", [1.0], load_model(tiny_model_path), finetuned, rank=4)
    assert dropped == [] and max(expert.errors.values()) < 1e-5
    model = HoEModel.from_experts(load_model(tiny_model_path), [expert], ["c"])
    ids = torch.tensor([[4, 8, 15, 16, 23, 42]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, preference=[1.0]).logits, finetuned(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    low, _ = expert_from_finetuned("c", [1.0], load_model(tiny_model_path), finetuned, rank=2)
    assert min(low.errors.values()) > 1e-3


@pytest.mark.parametrize("preference,match", [
    ([0.5, -0.1, 0.6], "negative"), ([float("nan"), 0.5, 0.5], "finite"), ([0.5, 0.5], "2 weight"),
    ({"a": 1.0, "zzz": 1.0}, "unknown objective"), ([0, 0, 0], "all weights are zero"),
])
def test_bad_preferences_are_refused(hoe, preference, match):
    with pytest.raises(PreferenceError, match=match):
        hoe.generate(["hi"], preference, max_new_tokens=2)


def test_experts_that_do_not_fit_and_corrupt_folders_are_refused(hoe, tiny_model_path, tmp_path):
    from moalign.models import build_tiny_model

    other = build_tiny_model(tmp_path / "wide", hidden_size=32, intermediate_size=64)
    wrong = make_expert(other, tmp_path / "wrong", seed=1)
    with pytest.raises(HoEError, match="do not fit the base layer"):
        HoEModel.from_experts(load_model(tiny_model_path), [expert_from_adapter("x", [1.0], wrong)], ["x"])
    with pytest.raises(HoEError, match="preference over 3 objectives"):
        HoEModel.from_experts(load_model(tiny_model_path), [expert_from_adapter("x", [1, 0, 0], wrong)], ["x"])
    hoe.save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "hoe_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(HoEError, match="cannot be read"):
        HoEModel.from_pretrained(tmp_path / "saved")
    with pytest.raises(HoEError, match="not a HoE model folder"):
        HoEModel.from_pretrained(tmp_path)
