"""Batched, seeded text generation for prompts given as plain text or chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm


def render_prompt(tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
    """The text the model sees: chat prompts (and plain prompts, when the tokenizer has a chat template)
    are rendered as one user turn with the assistant turn opened."""
    if isinstance(prompt, str):
        if not getattr(tokenizer, "chat_template", None):
            return prompt
        prompt = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


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

    Batches are left-padded; each batch reseeds from ``seed`` and its index, so results do not depend
    on what ran before.
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    device = next(model.parameters()).device
    outputs: list[str] = []
    try:
        starts = range(0, len(prompts), batch_size)
        for b, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False)):
            texts = [render_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            torch.manual_seed(seed * 1_000_003 + b)
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature, "top_p": top_p}
                if temperature > 0
                else {"do_sample": False}
            )
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
            new_tokens = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return outputs
