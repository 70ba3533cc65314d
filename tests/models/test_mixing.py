import numpy as np
import torch

from helpers import make_expert
from moalign.models import LoraMixture, load_model


def test_mixture_is_the_exact_weighted_sum_of_expert_deltas(tiny_model_path, tmp_path):
    dirs = [make_expert(tiny_model_path, tmp_path / f"e{k}", seed=k) for k in range(3)]
    mix = LoraMixture(load_model(tiny_model_path), dirs)
    layer = mix.model.base_model.model.model.layers[0].self_attn.q_proj
    x = torch.randn(5, layer.base_layer.in_features)
    weights = np.array([0.5, 0.3, 0.2])
    mix.set_weights(weights)
    with torch.no_grad():
        got = layer(x)
        expected = layer.base_layer(x)
        for name, w in zip(mix.names, weights):
            a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
            expected = expected + w * (8 / 4) * (x @ a.T @ b.T)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_one_hot_weights_reproduce_the_single_expert(tiny_model_path, tmp_path):
    from peft import PeftModel

    dirs = [make_expert(tiny_model_path, tmp_path / f"e{k}", seed=10 + k) for k in range(2)]
    mix = LoraMixture(load_model(tiny_model_path), dirs)
    ids = torch.tensor([[3, 9, 27, 81 % 60]])
    single = PeftModel.from_pretrained(load_model(tiny_model_path), str(dirs[1])).eval()
    mix.set_weights([0.0, 1.0])
    with torch.no_grad():
        torch.testing.assert_close(mix.model(input_ids=ids).logits, single(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    mix.set_weights([0.0, 0.0])
    with torch.no_grad(), mix.model.disable_adapter():
        base = mix.model(input_ids=ids).logits
    with torch.no_grad():
        torch.testing.assert_close(mix.model(input_ids=ids).logits, base)
