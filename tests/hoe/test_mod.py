"""MOD: its next-token scores are the preference-weighted sum of each expert's log-probabilities, computed by hand
from the experts loaded alone in PEFT."""

import numpy as np
import torch
from peft import PeftModel

from helpers import make_expert
from moalign.hoe import HoEModel, expert_from_adapter
from moalign.hoe.mod import mod_generate, mod_step
from moalign.models import load_model, load_tokenizer


def test_mod_mixes_the_experts_log_probabilities(tiny_model_path, tmp_path):
    dirs = [make_expert(tiny_model_path, tmp_path / f"e{k}", seed=40 + k, scale=0.3) for k in range(2)]
    experts = [expert_from_adapter(n, np.eye(2)[k], d) for k, (n, d) in enumerate(zip("ab", dirs))]
    model = HoEModel.from_experts(load_model(tiny_model_path), experts, ["a", "b"],
                                  tokenizer=load_tokenizer(tiny_model_path))
    ids = torch.randint(3, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    positions = torch.arange(6).expand(2, 6)
    preferences = np.array([[0.7, 0.3], [0.1, 0.9]])
    scores, _ = mod_step(model, preferences)(ids, mask, positions, None)
    with torch.no_grad():
        alone = [torch.log_softmax(PeftModel.from_pretrained(load_model(tiny_model_path), str(d))(input_ids=ids)
                                   .logits[:, -1], -1) for d in dirs]
    expected = torch.stack([preferences[i, 0] * alone[0][i] + preferences[i, 1] * alone[1][i] for i in range(2)])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)
    prompts = ["hello there", "a longer prompt to pad the batch"]
    assert mod_generate(model, prompts, [1.0, 0.0], max_new_tokens=8) == model.generate(prompts, [1.0, 0.0], max_new_tokens=8)
