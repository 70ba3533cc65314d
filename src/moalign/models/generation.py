"""Batched, seeded text generation for prompts given as plain text or chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def render_prompt(tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
    """The text the model sees: chat prompts (and plain prompts, when the tokenizer has a chat template)
    are rendered with the assistant turn opened; without a template, chat turns are written as
    :func:`render_conversation` writes them."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt if isinstance(prompt, str) else render_conversation(tokenizer, prompt, "")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def render_conversation(tokenizer: Any, prompt: str | list[dict[str, str]], response: str) -> str:
    """The text of a finished exchange, as reward models read it: with a chat template, the prompt's turns
    and the response as the assistant turn; without one, the turns' text followed by the response."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": response}], tokenize=False)
    if isinstance(prompt, str):
        return f"{prompt}{response}"
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + f"assistant: {response}"


def padding_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-sequence token (read, never set on
    the tokenizer, which concurrent callers share)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of token-id rows padded on the left, as generation wants them."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Generate one response per prompt; ``temperature=0`` is greedy. Same seed, same outputs.

    Decoding is :mod:`moalign.models.decoding`'s loop: batches are left-padded by hand (the caller's tokenizer is
    never changed), prompt ``i`` samples with its own generator seeded ``seed + i`` (top_k as the model's
    generation config, like transformers' ``generate``), so an answer does not depend on the batch it is in,
    and the global random state is never used.
    """
    from moalign.models.decoding import default_top_k, eos_ids, generate_texts, model_step

    model.eval()
    prompts = list(prompts)
    return generate_texts(lambda rows: model_step(model), tokenizer, prompts, device=next(model.parameters()).device,
                          eos_token_ids=eos_ids(model, tokenizer), max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p, top_k=default_top_k(model),
                          seeds=[seed + i for i in range(len(prompts))], batch_size=batch_size, progress=progress,
                          desc=desc)
