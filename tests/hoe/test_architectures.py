"""HoE on the other architectures moalign supports: GPT-2 (``Conv1D`` layers, ``transformer.h`` blocks) and Qwen2,
each against PEFT's own adapter, with a router attached."""

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from helpers import tiny_architecture as tiny
from moalign.hoe import HoEModel, expert_from_adapter


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_hoe_matches_peft_on_other_architectures(kind, tmp_path):
    dirs = []
    for k in range(2):
        model = get_peft_model(tiny(kind), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                      fan_in_fan_out=kind == "gpt2"))
        generator = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(0.2 * torch.randn(p.shape, generator=generator))
        model.save_pretrained(tmp_path / f"e{k}")
        dirs.append(tmp_path / f"e{k}")
    experts = [expert_from_adapter(f"o{k}", np.eye(2)[k], d) for k, d in enumerate(dirs)]
    hoe = HoEModel.from_experts(tiny(kind), experts, ["o0", "o1"])
    assert hoe.config.blocks == ("transformer.h" if kind == "gpt2" else "model.layers")
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny(kind), str(dirs[1])).eval()(input_ids=ids).logits
        torch.testing.assert_close(hoe(input_ids=ids, preference=[0.0, 1.0]).logits, expected, rtol=1e-4, atol=1e-5)
    hoe.add_router([0.5, 0.5])
    with torch.no_grad():
        routed = hoe(input_ids=ids, preference=[0.5, 0.5]).logits
    assert torch.isfinite(routed).all()
    hoe.export_lora([0.0, 1.0], tmp_path / "export")
    with torch.no_grad():
        exported = PeftModel.from_pretrained(tiny(kind), str(tmp_path / "export")).eval()(input_ids=ids).logits
    torch.testing.assert_close(exported, expected, rtol=1e-4, atol=1e-5)
