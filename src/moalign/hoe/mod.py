"""MOD (Shi et al. 2024, "Decoding-Time Language Model Alignment with Multiple Objectives"): the baseline that
mixes the single-objective experts' next-token distributions, ``log p ∝ Σ_i λ_i log p_i``.

It needs one forward pass per objective per token (K KV caches); HoE's one mixed forward is what must beat it.
Each expert runs as the same :class:`~moalign.hoe.HoEModel` with one-hot expert weights, so MOD and HoE share
weights, tokenisation and the decoding loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from moalign.hoe.config import HoEError
from moalign.hoe.layer import MixingWeights
from moalign.hoe.model import HoEModel, Preferences
from moalign.models.decoding import Step, model_step
from moalign.models.static_decoding import check_decoding, decoding_step


def objective_experts(model: HoEModel) -> list[int]:
    """For each objective, the index of the expert whose preference is that objective alone."""
    found = []
    for k, objective in enumerate(model.objectives):
        matches = [j for j, e in enumerate(model.config.experts) if np.isclose(e.preference[k], 1.0)]
        if not matches:
            raise HoEError(f"MOD needs a single-objective expert for {objective!r}; the model has "
                           f"{[e.name for e in model.config.experts]}")
        found.append(matches[0])
    return found


def mod_step(model: HoEModel, preferences: np.ndarray,
             expert_step: Callable[[MixingWeights], Step] | None = None) -> Step:
    """A decoding step that runs every objective's expert and mixes their log-probabilities per row.

    ``expert_step(weights)`` makes one expert's step from its one-hot mixing weights (default:
    :func:`~moalign.models.decoding.model_step`; a benchmark passes a static-cache or CUDA-graph step).
    """
    experts = objective_experts(model)
    batch = preferences.shape[0]
    device = next(model.parameters()).device
    lam = torch.as_tensor(preferences, dtype=torch.float32, device=device)
    expert_step = expert_step or (lambda weights: model_step(model, mixing_weights=weights))
    one_hot = [torch.nn.functional.one_hot(torch.tensor(j), len(model.config.experts)).float() for j in experts]
    steps = [expert_step(model.mixing_weights(batch=batch, expert_weights=w)) for w in one_hot]

    def step(new_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, caches: Any):
        caches = caches or [None] * len(steps)
        mixed, new_caches = 0.0, []
        for k, (expert, cache) in enumerate(zip(steps, caches)):
            logits, cache = expert(new_ids, attention_mask, position_ids, cache)
            mixed = mixed + lam[:, k, None] * torch.log_softmax(logits.float(), dim=-1)
            new_caches.append(cache)
        return mixed, new_caches

    return step


@torch.no_grad()
def mod_generate(model: HoEModel, prompts: Sequence[Any], preference: Preferences | None = None, *,
                 tokenizer: Any = None, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None, batch_size: int = 16,
                 progress: bool = False, desc: str = "MOD", decoding: str = "dynamic") -> list[str]:
    """:meth:`HoEModel.generate`'s contract, decoded with MOD instead of HoE's routing."""
    prompts = list(prompts)
    preferences = model.preference_matrix(preference, len(prompts))
    check_decoding(decoding, next(model.parameters()).device)

    def expert_step(weights: MixingWeights) -> Step:
        return decoding_step(model, decoding, max_new_tokens, mixing_weights=weights)

    return model.decode_prompts(lambda rows: mod_step(model, preferences[rows], expert_step), prompts,
                                tokenizer=tokenizer, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, top_k=top_k, seed=seed, seeds=seeds, batch_size=batch_size,
                                progress=progress, desc=desc)
