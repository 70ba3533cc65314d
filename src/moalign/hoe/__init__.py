"""HoE (arXiv 2505.20925): LoRA experts, router experts and preference routing in one base model, so every
request, even every row of one batch, gets its own trade-off without retraining or weight merging.

Laid out like a PEFT tuner: :mod:`~moalign.hoe.config` (the manifest), :mod:`~moalign.hoe.layer` (the
mixed-preference LoRA layer and routers), :mod:`~moalign.hoe.model` (:class:`HoEModel`), with the pieces it is
built from: :mod:`~moalign.hoe.experts` (task-SVD, experts from adapters or fine-tuned models),
:mod:`~moalign.hoe.merge` (TIES and task arithmetic), :mod:`~moalign.hoe.routing` (parameter-free preference
routing); decoding is :mod:`moalign.models.decoding` (per-row seeded, shared with all generation). Around them: :mod:`~moalign.hoe.build`
(``moalign hoe build``), :mod:`~moalign.hoe.mod` (the MOD baseline) and :mod:`~moalign.hoe.train_routers`
(router experts by PPO on smooth Tchebycheff).
"""

from moalign.hoe.config import AnchorConfig, ExpertConfig, HoEConfig, HoEError
from moalign.hoe.experts import (
    Expert,
    ExpertError,
    compress,
    expert_from_adapter,
    expert_from_finetuned,
    merged_expert,
    task_svd,
    task_vectors,
)
from moalign.hoe.layer import MixingWeights, MixtureLoraLinear, RouterExpert, mixing
from moalign.hoe.merge import merge_task_vectors, task_arithmetic, ties_merge, trim
from moalign.hoe.model import HoEModel
from moalign.hoe.routing import route_preference, route_preferences

__all__ = [
    "AnchorConfig",
    "Expert",
    "ExpertConfig",
    "ExpertError",
    "HoEConfig",
    "HoEError",
    "HoEModel",
    "MixingWeights",
    "MixtureLoraLinear",
    "RouterExpert",
    "compress",
    "expert_from_adapter",
    "expert_from_finetuned",
    "merge_task_vectors",
    "merged_expert",
    "mixing",
    "route_preference",
    "route_preferences",
    "task_arithmetic",
    "task_svd",
    "task_vectors",
    "ties_merge",
    "trim",
]
