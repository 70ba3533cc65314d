"""MGDA-UB as Sener & Koltun define it: min-norm weights on the Gram of the per-objective gradients with
respect to the shared representation (here the policy's final hidden states), then one backward."""

import torch
from step_worker import OBJECTIVES, uneven_dataset

from moalign.models import sequence_logprobs
from moalign.moo import min_norm_weights
from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from moalign.train.losses import objective_losses, pair_margins


def independent_weights(trainer, batch, index):
    """Recompute the step-0 weights from scratch: the final hidden states as a leaf, the output layer and the
    DPO losses applied by hand, K gradients w.r.t. that leaf, their Gram, the min-norm solve."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states[-1]
        reference = trainer.reference(batch, index, "train")
    leaf = hidden.detach().requires_grad_(True)
    logits = model.get_output_embeddings()(leaf)[:, :-1]
    targets = batch["input_ids"][:, 1:]
    per_token = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    policy = (per_token * batch["response_mask"][:, 1:]).sum(-1)
    out = objective_losses(pair_margins(policy, reference), batch["labels"], batch["label_mask"],
                           beta=trainer.config.beta)
    present = [k for k in range(len(OBJECTIVES)) if out.counts[k] > 0]
    grads = torch.stack([torch.autograd.grad(out.losses[k], leaf, retain_graph=True)[0].reshape(-1) for k in present])
    gram = (grads @ grads.T).double().numpy()
    weights = torch.zeros(len(OBJECTIVES), dtype=torch.float64)
    weights[present] = torch.as_tensor(min_norm_weights(gram)[0])
    return weights, sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])


def test_mgda_ub_weights_come_from_the_representation_gram(tiny_model_path, tmp_path):
    config = MultiObjectiveDPOConfig(model=str(tiny_model_path), objectives=OBJECTIVES, rule="mgda_ub", use_lora=True,
                                     per_device_batch_size=8, max_length=64, max_prompt_length=24, max_steps=1,
                                     logging_steps=0, eval_before=False, output_dir=str(tmp_path / "run"))
    trainer = MultiObjectiveDPOTrainer(config, train_dataset=uneven_dataset())
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # LoRA B starts at zero, where the policy is the reference; move off it
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    index = trainer.sampler.indices(0)
    expected, _ = independent_weights(trainer, trainer.make_batch(trainer.train_dataset, index), index)
    metrics = trainer.compute_gradients(0)
    got = torch.tensor([metrics[f"{name}/weight"] for name in OBJECTIVES], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert (expected > 1e-3).sum() >= 2  # a real trade-off, not a one-hot answer
    assert any(k.startswith("cosine/") for k in metrics) and f"{OBJECTIVES[0]}/grad_norm" in metrics
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.params)
