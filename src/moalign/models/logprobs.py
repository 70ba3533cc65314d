"""Summed log-probabilities of response tokens, the quantity every preference loss is built on."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token: ``out[:, t] = log p(input_ids[:, t+1] | input_ids[:, :t+1])``."""
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-softmax in half precision loses the small differences DPO needs
    targets = input_ids[:, 1:].unsqueeze(-1)
    return (logits.gather(-1, targets) - torch.logsumexp(logits, dim=-1, keepdim=True)).squeeze(-1)


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """Sum of ``log p(token)`` over positions where ``response_mask`` is 1 (prompt and padding excluded)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    per_token = token_logprobs(logits, input_ids)
    return (per_token * response_mask[:, 1:].to(per_token.dtype)).sum(-1)
