"""Training data as a trainer config describes it: preference files (any adapter) split into train / eval.

A config names its files (``train_files``, ``eval_files``), their ``adapter``, the objective each
one-objective file labels (``file_objectives``), which objectives to keep, the held-out fraction and
a cap on training pairs. Built-in tasks are built by ``moalign.tasks`` and handed in as ``data``.
"""

from __future__ import annotations

from typing import Any

from moalign.data.loaders import load_preference_data
from moalign.data.schema import DataError, PreferenceDataset, concat_datasets


def load_preference_files(files: list[str], config: Any) -> PreferenceDataset:
    """Every file of ``files`` read with the config's adapter, as one dataset."""
    if config.file_objectives is not None and len(config.file_objectives) != len(files):
        raise DataError(f"file_objectives has {len(config.file_objectives)} name(s) for {len(files)} file(s)")
    parts = []
    for i, path in enumerate(files):
        options = {"objective": config.file_objectives[i]} if config.file_objectives else {}
        parts.append(load_preference_data(path, adapter=config.adapter, drop_invalid=config.drop_invalid, **options))
    return concat_datasets(parts)


def load_training_data(config: Any, data: PreferenceDataset | None = None) -> tuple[PreferenceDataset, PreferenceDataset | None]:
    """``(train, eval)`` as the config says, from ``data`` (a built task) or the config's files.

    Unknown objective names are errors; so is a training set too small to hold out an eval split.
    """
    if data is None:
        if not config.train_files:
            raise DataError("no training data: set train_files (or task: bundled | synthetic)")
        data = load_preference_files(config.train_files, config)
    if config.objectives is not None:
        data = data.select_objectives(config.objectives)
    if config.eval_files:
        train, evaluation = data, load_preference_files(config.eval_files, config)
        if config.objectives is not None:
            evaluation = evaluation.select_objectives(config.objectives)
    else:
        held_out = max(1, round(len(data) * config.eval_fraction))  # as PreferenceDataset.split counts
        if len(data) - held_out < 1:
            raise DataError(f"the training data has {len(data)} pair(s): too few to hold out eval_fraction "
                            f"{config.eval_fraction} and still train; add pairs, change eval_fraction or give eval_files")
        train, evaluation = data.split(config.eval_fraction, seed=config.seed)
    if config.max_train_pairs is not None:
        train = PreferenceDataset(train.pairs[: config.max_train_pairs], train.objectives)
    return train, evaluation
