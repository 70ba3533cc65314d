"""Learned rewards: a Hugging Face sequence-classification model as a :class:`~moalign.objectives.Scorer`.

Any ``AutoModelForSequenceClassification`` checkpoint works (a local folder or a Hub name such as
``Ray2333/gpt2-large-harmless-reward_model``): one output is one objective's reward. A multi-head model
(``num_labels = K``, ``id2label`` naming the objectives, as moalign's reward-model trainer saves them)
gives one scorer per head, sharing one loaded model. Scoring is batched, without gradients, on the
model's device; the tokenizer is never mutated (padding side is chosen per call), so concurrent callers
can share it.

The text scored is the conversation the policy produced: with a chat template, the prompt as the user turn
and the response as the assistant turn; without one, prompt and response joined. A reward model trained here is
scored at the token limit it was trained with (recorded in its ``moalign_training.json``), so texts are cut the
same way in training and in use; any other at 1024 tokens, unless ``max_length`` says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moalign.objectives.base import Scorer

#: token limit of a reward model that records none
DEFAULT_MAX_LENGTH = 1024


def encode_conversations(tokenizer: Any, prompts: Sequence[Any], responses: Sequence[str],
                         max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` of the rendered exchanges, as reward models are trained
    and scored on them. A text over ``max_length`` tokens keeps its last tokens (the response, which is what is
    judged). The padding is built here, so a shared tokenizer is never changed."""
    from moalign.models import padding_id, render_conversation

    pad = padding_id(tokenizer)
    if pad is None:
        raise ValueError("the reward model's tokenizer has neither a pad nor an eos token to pad with")
    encoded = [tokenizer(render_conversation(tokenizer, p, r), add_special_tokens=False)["input_ids"][-max_length:]
               for p, r in zip(prompts, responses)]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):
        input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def sequence_rewards(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, K)`` rewards of a right-padded batch: the head outputs at each row's last real token.

    Read at the attention mask's last position rather than where the pad id first appears, because a
    tokenizer that pads with its eos also ends chat turns with it."""
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if hidden.ndim == 2:  # models that pool themselves
        return hidden
    last = batch["attention_mask"].sum(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class RewardModelScorer(Scorer):
    """One output (``head``) of a sequence-classification reward model, as a scorer named ``name``.

    Args:
        name: the objective this head scores.
        model: a loaded ``...ForSequenceClassification`` model (shared between heads of one model).
        tokenizer: its tokenizer; it needs a pad token (the eos is used when it has none, without mutating it).
        head: which output, by index or by its ``id2label`` name; default 0.
        batch_size, max_length: how many texts a forward pass takes, and the token limit of each.
    """

    def __init__(self, name: str, model: Any, tokenizer: Any, *, head: int | str = 0, batch_size: int = 8,
                 max_length: int = DEFAULT_MAX_LENGTH):
        labels = {v: int(k) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
        if isinstance(head, str):
            if head not in labels:
                raise ValueError(f"reward model has no head {head!r}; its heads are {sorted(labels)}")
            head = labels[head]
        if not 0 <= head < model.config.num_labels:
            raise ValueError(f"head {head} is outside the reward model's {model.config.num_labels} output(s)")
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("the reward model's tokenizer has neither a pad nor an eos token to pad with")
        self.name, self.model, self.tokenizer, self.head = name, model.eval(), tokenizer, head
        self.batch_size, self.max_length = batch_size, max_length

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, name: str | None = None, head: int | str = 0,
                        dtype: str | torch.dtype = "float32", device: str | None = None, **options: Any) -> RewardModelScorer:
        """Load a reward model and make a scorer of one of its heads (named after the head by default)."""
        model, tokenizer = load_reward_model(name_or_path, dtype=dtype, device=device)
        labels = getattr(model.config, "id2label", None) or {}
        default = head if isinstance(head, str) else labels.get(head, f"reward{head}")
        options["max_length"] = scoring_length(name_or_path, options.get("max_length"))
        return cls(name or default, model, tokenizer, head=head, **options)

    def fingerprint(self) -> dict[str, Any]:
        path = str(getattr(self.model.config, "_name_or_path", ""))
        # a folder's weight files (name, size, modification time), so a model retrained in place is a new fingerprint
        weights = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(path).glob("*.safetensors")) \
            if path and Path(path).is_dir() else []
        return {**super().fingerprint(), "model": path, "weights": weights, "head": self.head,
                "max_length": self.max_length}

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        device = next(self.model.parameters()).device
        out = np.empty(len(responses), dtype=np.float64)
        for start in range(0, len(responses), self.batch_size):
            end = start + self.batch_size
            batch = encode_conversations(self.tokenizer, prompts[start:end], responses[start:end], self.max_length)
            rewards = sequence_rewards(self.model, {k: v.to(device) for k, v in batch.items()})
            out[start:start + rewards.shape[0]] = rewards[:, self.head].float().cpu().numpy()
        return out


def load_reward_model(name_or_path: str, *, dtype: str | torch.dtype = "float32", device: str | None = None):
    """``(model, tokenizer)`` of a sequence-classification reward model, in eval mode, with ``pad_token_id`` set
    on the model's config (the last non-pad token is where it reads its score)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from moalign.models import padding_id, resolve_dtype

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path, dtype=resolve_dtype(dtype))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = padding_id(tokenizer)
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer


def reward_model_scorers(name_or_path: str, **options: Any) -> list[RewardModelScorer]:
    """One scorer per head of a (multi-head) reward model, named by its ``id2label``; the heads share one model."""
    model, tokenizer = load_reward_model(name_or_path, dtype=options.pop("dtype", "float32"),
                                         device=options.pop("device", None))
    labels = getattr(model.config, "id2label", None) or {}
    options["max_length"] = scoring_length(name_or_path, options.get("max_length"))
    return [RewardModelScorer(labels.get(k, f"reward{k}"), model, tokenizer, head=k, **options)
            for k in range(model.config.num_labels)]


def scoring_length(name_or_path: str, max_length: int | None = None) -> int:
    """The token limit to score with: ``max_length`` when given, else the one the model was trained with here
    (``moalign train rm`` records it), else :data:`DEFAULT_MAX_LENGTH`."""
    if max_length:
        return max_length
    try:
        recorded = json.loads((Path(name_or_path) / "moalign_training.json").read_text()).get("config", {})
    except (OSError, ValueError):  # a Hub name, a model trained elsewhere, an unreadable summary
        return DEFAULT_MAX_LENGTH
    return int(recorded.get("max_length") or DEFAULT_MAX_LENGTH)
