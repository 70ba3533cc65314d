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


def render_conversation(tokenizer: Any, prompt: str | list[dict[str, str]], response: str) -> str:
    """The text of a finished exchange, as reward models read it: with a chat template, the prompt's turns
    and the response as the assistant turn; without one, the turns' text followed by the response."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": response}], tokenize=False)
    if isinstance(prompt, str):
        return f"{prompt}{response}"
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + f"assistant: {response}"


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

    Batches are left-padded by hand, so the caller's tokenizer is never changed. Greedy decoding draws no
    random numbers; sampling seeds from ``seed`` and the batch index inside ``torch.random.fork_rng``, so
    results do not depend on what ran before and the global random state is unchanged afterwards (HF
    ``generate`` samples from the global generator, so two threads sampling at once would still share it
    during the call; a per-call generator needs moalign's own sampling loop, which HoE's batched
    mixed-preference generation will bring).
    """
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False)):
        texts = [render_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        input_ids, attention_mask = left_pad([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], pad)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed * 1_000_003 + b)
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
        new_tokens = out[:, input_ids.shape[1]:]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs
