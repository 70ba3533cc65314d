import math

import pytest
import torch

from moalign.data import PreferenceCollator, make_pair
from moalign.models import load_model, sequence_logprobs
from moalign.train import gram_from_grads, objective_losses, pair_margins, per_objective_grads

OBJ = ("long", "short", "warm")
PAIRS = [
    make_pair("Explain the river.", "The river runs to the sea.", "Water.", {"long": "a", "short": "b", "warm": "tie"}),
    make_pair("Say hi.", "Hi!", "Hello there, friend!", {"short": "a", "warm": "b"}),
    make_pair("Name a fruit.", "An apple, crisp and sweet.", "Pear.", {"long": "a"}),
    make_pair("Describe rain.", "Wet.", "Rain falls softly on the roofs.", {"long": "b", "warm": "b", "short": "a"}),
]


def test_losses_match_a_per_pair_reference():
    torch.manual_seed(0)
    margins = torch.randn(4, dtype=torch.float64)
    labels = torch.tensor([[1, -1, 0], [0, 1, -1], [1, 0, 0], [-1, 1, -1]], dtype=torch.int8)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    beta = 0.5
    for loss_type in ("sigmoid", "ipo"):
        out = objective_losses(margins, labels, mask, beta=beta, loss_type=loss_type)
        for k in range(3):
            terms, correct = [], []
            for b in range(4):
                if not mask[b, k] or labels[b, k] == 0:
                    continue  # ties and absent labels do not count
                s = float(labels[b, k]) * float(margins[b])
                terms.append(-math.log(1 / (1 + math.exp(-beta * s))) if loss_type == "sigmoid" else (s - 1 / (2 * beta)) ** 2)
                correct.append(s > 0)
            assert out.counts[k] == len(terms)
            assert out.losses[k].item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)
            assert out.accuracy[k].item() == pytest.approx(sum(correct) / len(correct))
    with pytest.raises(ValueError, match="unknown loss_type"):
        objective_losses(margins, labels, mask, beta=beta, loss_type="hinge")


def test_margins_from_sequence_layout():
    policy = torch.tensor([-1.0, -2.0, -3.0, -5.0])  # [a0, a1, b0, b1]
    reference = torch.tensor([-1.5, -2.0, -2.0, -6.0])
    torch.testing.assert_close(pair_margins(policy, reference), torch.tensor([(0.5) - (-1.0), 0.0 - 1.0]))


@pytest.fixture(scope="module")
def tiny_batch(tiny_model_path, tiny_tokenizer):
    torch.manual_seed(0)
    model = load_model(tiny_model_path)
    batch = PreferenceCollator(tiny_tokenizer, OBJ, max_length=48, max_prompt_length=16)(PAIRS)
    with torch.no_grad():
        reference = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    with torch.no_grad():  # move away from the reference so margins are non-zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model, batch, reference


def losses_of(model, batch, reference):
    policy = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    return objective_losses(pair_margins(policy, reference), batch["labels"], batch["label_mask"], beta=0.5).losses


def test_shared_graph_vjps_equal_separate_backward_passes(tiny_batch):
    model, batch, reference = tiny_batch
    params = [p for p in model.parameters() if p.requires_grad]
    shared = per_objective_grads(losses_of(model, batch, reference), params, [0, 1, 2])
    for k in range(3):
        model.zero_grad()
        losses_of(model, batch, reference)[k].backward()  # a fresh forward and a full backward per objective
        for g, p in zip(shared[k], params):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    flat = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in shared]).double()
    torch.testing.assert_close(gram_from_grads(shared), flat @ flat.T, rtol=1e-5, atol=1e-9)


def test_gradient_matches_finite_differences(tiny_model_path, tiny_tokenizer):
    """Directional derivative along the gradient, over every parameter (Llama's RMSNorm computes in float32
    even in a float64 model, so single-entry differences would only measure that rounding)."""
    torch.manual_seed(1)
    model = load_model(tiny_model_path).double()
    batch = PreferenceCollator(tiny_tokenizer, OBJ, max_length=48, max_prompt_length=16)(PAIRS)
    with torch.no_grad():
        reference = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    params = list(model.parameters())
    (grads,) = per_objective_grads(losses_of(model, batch, reference), params, [1])
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    t = 1e-4
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(t * g / norm)
        plus = losses_of(model, batch, reference)[1].item()
        for p, g in zip(params, grads):
            p.sub_(2 * t * g / norm)
        minus = losses_of(model, batch, reference)[1].item()
    assert (plus - minus) / (2 * t) == pytest.approx(norm.item(), rel=1e-3)
