import pytest
import torch

from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from moalign.train.collectors import AutogradCollector, PerPairCollector


def exact_step(t):
    """The weights, per-objective losses and ``.grad`` of step 0, through the public step API."""
    metrics = t.compute_gradients(0)
    names = t.objectives
    weights = torch.tensor([metrics[f"{n}/weight"] for n in names])
    losses = torch.tensor([metrics[f"{n}/loss"] for n in names])
    return weights, losses


def trainer(tiny_model_path, tmp_path, method, rule="mgda_decoupled", **overrides):
    config = MultiObjectiveDPOConfig(model=str(tiny_model_path), task="synthetic", gradient_method=method, rule=rule,
                                     per_device_batch_size=4, gradient_accumulation_steps=2, max_length=64,
                                     max_prompt_length=24, max_steps=2, logging_steps=0, output_dir=str(tmp_path / method / rule),
                                     **overrides)
    t = MultiObjectiveDPOTrainer(config)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # LoRA B starts at zero; give the adapters a non-trivial state, identical in both
        for name, p in t.model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return t


@pytest.mark.parametrize("rule", ["mgda_decoupled", "pcgrad"])
def test_per_pair_geometry_equals_k_autograd_vjps(tiny_model_path, tmp_path, rule):
    fast, slow = trainer(tiny_model_path, tmp_path, "per_pair", rule), trainer(tiny_model_path, tmp_path, "autograd", rule)
    assert isinstance(fast.objective_step.geometry, PerPairCollector)
    assert isinstance(slow.objective_step.geometry, AutogradCollector)
    w_fast, losses_fast = exact_step(fast)
    w_slow, losses_slow = exact_step(slow)
    torch.testing.assert_close(losses_fast, losses_slow)
    torch.testing.assert_close(w_fast, w_slow, rtol=1e-4, atol=1e-6)
    names = [n for n, p in fast.model.named_parameters() if p.requires_grad]
    for name, p_fast, p_slow in zip(names, fast.params, slow.params):
        scale = p_slow.grad.abs().max().item()
        torch.testing.assert_close(p_fast.grad, p_slow.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in fast.params)


def test_bf16_mixed_precision_keeps_both_gradient_methods_in_agreement(tiny_model_path, tmp_path):
    fast = trainer(tiny_model_path, tmp_path, "per_pair", mixed_precision="bf16")
    slow = trainer(tiny_model_path, tmp_path, "autograd", mixed_precision="bf16")
    w_fast, losses_fast = exact_step(fast)
    w_slow, losses_slow = exact_step(slow)
    assert torch.isfinite(losses_fast).all()
    torch.testing.assert_close(losses_fast, losses_slow)
    torch.testing.assert_close(w_fast, w_slow, rtol=2e-2, atol=2e-2)
    for p_fast, p_slow in zip(fast.params, slow.params):
        scale = p_slow.grad.abs().max().item()
        torch.testing.assert_close(p_fast.grad, p_slow.grad, rtol=5e-2, atol=5e-2 * scale)
    _, losses_fp32 = exact_step(trainer(tiny_model_path, tmp_path, "per_pair"))
    assert not torch.equal(losses_fp32, losses_fast)  # autocast really ran in bf16
    torch.testing.assert_close(losses_fp32, losses_fast, rtol=2e-2, atol=2e-2)


def test_per_pair_refuses_full_fine_tuning_when_asked(tiny_model_path, tmp_path):
    config = MultiObjectiveDPOConfig(model=str(tiny_model_path), task="synthetic", gradient_method="per_pair",
                                     use_lora=False, output_dir=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="every trainable parameter to be a Linear weight"):
        MultiObjectiveDPOTrainer(config)
    config.gradient_method = "auto"
    fallback = MultiObjectiveDPOTrainer(config).objective_step.geometry
    assert isinstance(fallback, AutogradCollector)  # falls back to autograd
