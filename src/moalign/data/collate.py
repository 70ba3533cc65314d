"""Tokenise preference pairs into one padded batch that every objective shares.

A batch of B pairs becomes 2B sequences ``[prompt + response_a for each pair] + [prompt + response_b
for each pair]``: one forward pass serves all objectives, which differ only in their labels.
``response_mask`` marks the response tokens (and the closing eos), so prompt and padding never
enter the response log-probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from moalign.data.schema import DataError, PreferencePair, Prompt


def encode_prompt(tokenizer: Any, prompt: Prompt, max_prompt_length: int) -> list[int]:
    """Token ids of a prompt as the policy sees it; chat prompts go through the chat template with the assistant
    turn opened. A prompt over ``max_prompt_length`` tokens keeps its last tokens (the part nearest the answer)."""
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise DataError("a conversational prompt needs a tokenizer with a chat template", field="prompt")
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
    return list(ids)[-max_prompt_length:]


def pair_labels(pairs: Sequence[PreferencePair], objectives: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels`` (int8 signs: +1 A, -1 B, 0 tie) and ``label_mask`` (which objectives label each pair), ``(B, K)``."""
    labels = torch.zeros((len(pairs), len(objectives)), dtype=torch.int8)
    label_mask = torch.zeros((len(pairs), len(objectives)), dtype=torch.bool)
    for i, pair in enumerate(pairs):
        for k, name in enumerate(objectives):
            if name in pair.labels:
                labels[i, k] = int(pair.labels[name])
                label_mask[i, k] = True
    return labels, label_mask


class PreferenceCollator:
    """Turn a list of :class:`PreferencePair` into tensors for preference losses.

    Args:
        tokenizer: a transformers tokenizer with a pad token and, for chat prompts, a chat template.
        objectives: the objective names, fixing the column order of ``labels``.
        max_length: the longest prompt + response, in tokens.
        max_prompt_length: prompts longer than this keep their last tokens (the part nearest the answer).

    Returns from ``__call__`` a dict with ``input_ids``, ``attention_mask``, ``response_mask`` of shape
    ``(2B, T)``, and ``labels`` (int8 signs: +1 A, -1 B, 0 tie) with ``label_mask`` (bool), shape ``(B, K)``.
    """

    def __init__(self, tokenizer: Any, objectives: Sequence[str], max_length: int = 512, max_prompt_length: int = 256):
        if max_prompt_length >= max_length:
            raise ValueError(f"max_prompt_length ({max_prompt_length}) must be below max_length ({max_length})")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it with moalign.models.load_tokenizer")
        self.tokenizer = tokenizer
        self.objectives = tuple(objectives)
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt (see :func:`encode_prompt`)."""
        return encode_prompt(self.tokenizer, prompt, self.max_prompt_length)

    def encode_response(self, response: str) -> list[int]:
        """Token ids of the response followed by eos, so the model also learns where to stop."""
        return self.tokenizer(response, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def __call__(self, pairs: Sequence[PreferencePair]) -> dict[str, torch.Tensor]:
        sequences: list[tuple[list[int], list[int]]] = []
        for side in ("response_a", "response_b"):
            for pair in pairs:
                prompt_ids = self.encode_prompt(pair.prompt)
                response_ids = self.encode_response(getattr(pair, side))
                sequences.append((prompt_ids, response_ids[: self.max_length - len(prompt_ids)]))
        width = max(len(p) + len(r) for p, r in sequences)
        n = len(sequences)
        input_ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        response_mask = torch.zeros((n, width), dtype=torch.long)
        for i, (prompt_ids, response_ids) in enumerate(sequences):
            total = len(prompt_ids) + len(response_ids)
            input_ids[i, :total] = torch.tensor(prompt_ids + response_ids)
            attention_mask[i, :total] = 1
            response_mask[i, len(prompt_ids):total] = 1
        labels, label_mask = pair_labels(pairs, self.objectives)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "labels": labels,
            "label_mask": label_mask,
        }
