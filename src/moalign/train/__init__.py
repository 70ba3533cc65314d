"""Training: multi-objective DPO (with any rule from ``moalign.moo``), its losses, gradients and checkpoints."""

from moalign.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from moalign.train.dpo_config import MultiObjectiveDPOConfig
from moalign.train.dpo_trainer import MultiObjectiveDPOTrainer
from moalign.train.gradients import NonFiniteError, gram_from_grads, per_objective_grads
from moalign.train.losses import ObjectiveLosses, objective_losses, pair_margins

__all__ = [
    "CheckpointError",
    "MultiObjectiveDPOConfig",
    "MultiObjectiveDPOTrainer",
    "NonFiniteError",
    "ObjectiveLosses",
    "gram_from_grads",
    "latest_checkpoint",
    "load_checkpoint",
    "objective_losses",
    "pair_margins",
    "per_objective_grads",
    "save_checkpoint",
]
