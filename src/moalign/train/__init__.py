"""Training: multi-objective DPO (with any rule from ``moalign.moo``), MODPO, reward models, RL (PAMA, MORLHF, gradient rules), their losses, gradients and
checkpoints."""

from moalign.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from moalign.train.dpo_config import MultiObjectiveDPOConfig
from moalign.train.dpo_trainer import MultiObjectiveDPOTrainer
from moalign.train.gradients import NonFiniteError, gram_from_grads, per_objective_grads
from moalign.train.losses import ObjectiveLosses, objective_losses, pair_margins
from moalign.train.modpo import MODPOConfig, MODPOTrainer
from moalign.train.reward_config import RewardModelConfig
from moalign.train.rl_config import MultiObjectiveRLConfig
from moalign.train.rl_trainer import MultiObjectiveRLTrainer
from moalign.train.reward_trainer import RewardModelTrainer

__all__ = [
    "CheckpointError",
    "MODPOConfig",
    "MODPOTrainer",
    "MultiObjectiveDPOConfig",
    "MultiObjectiveDPOTrainer",
    "MultiObjectiveRLConfig",
    "MultiObjectiveRLTrainer",
    "NonFiniteError",
    "ObjectiveLosses",
    "RewardModelConfig",
    "RewardModelTrainer",
    "gram_from_grads",
    "latest_checkpoint",
    "load_checkpoint",
    "objective_losses",
    "pair_margins",
    "per_objective_grads",
    "save_checkpoint",
]
