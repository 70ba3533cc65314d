import torch
from peft import PeftModel

from moalign.models import LoraSpec, add_lora, load_model


def test_lora_wraps_every_linear_but_the_head_and_round_trips(tiny_model_path, tmp_path):
    model = add_lora(load_model(tiny_model_path), LoraSpec(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("lm_head" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("down_proj" in n for n in trainable)
    with torch.no_grad():  # make the adapter non-trivial (B starts at zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    ids = torch.tensor([[5, 6, 7, 8]])
    before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_model(tiny_model_path), tmp_path / "adapter")
    torch.testing.assert_close(reloaded(input_ids=ids).logits, before)
    with reloaded.disable_adapter():
        assert not torch.allclose(reloaded(input_ids=ids).logits, before)
