"""Configuration of multi-objective reward-model training (:class:`moalign.train.RewardModelTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass

from moalign.train.config_base import PreferenceDataConfig


@dataclass
class RewardModelConfig(PreferenceDataConfig):
    """Bradley-Terry reward models, one head per objective on one shared backbone.

    The model, training, logging and data settings are those of
    :class:`~moalign.train.config_base.PreferenceDataConfig`. Each objective k gets an output of a
    sequence-classification head; its loss is ``-log sigmoid(r_k(preferred) - r_k(other))`` averaged over
    the pairs that objective labels strictly (ties and absent labels are masked), and the step descends the
    mean of the K losses. Under LoRA the head is trained in full and merged into the saved model, so
    ``output_dir/final`` loads with ``AutoModelForSequenceClassification.from_pretrained`` (``num_labels`` = K,
    ``id2label`` = the objectives) and with ``moalign.objectives.reward_model_scorers``.

    Texts are rendered as the scorer renders them (the prompt's turns, the response as the assistant turn); a
    text over ``max_length`` tokens keeps its last tokens, the response's end. ``max_prompt_length`` is unused.
    """

    learning_rate: float = 1e-4
    max_length: int = 512
    output_dir: str = "runs/rm"
