"""Training data from a trainer config: files (any adapter) or the bundled task, split into train / eval."""

from __future__ import annotations

from typing import Any

from moalign.data import DataError, PreferenceDataset, concat_datasets, load_preference_data


def _load_files(files: list[str], config: Any) -> PreferenceDataset:
    if config.file_objectives is not None and len(config.file_objectives) != len(files):
        raise DataError(f"file_objectives has {len(config.file_objectives)} name(s) for {len(files)} file(s)")
    parts = []
    for i, path in enumerate(files):
        options = {"objective": config.file_objectives[i]} if config.file_objectives else {}
        parts.append(load_preference_data(path, adapter=config.adapter, drop_invalid=config.drop_invalid, **options))
    return concat_datasets(parts)


def load_training_data(config: Any) -> tuple[PreferenceDataset, PreferenceDataset | None]:
    """Load ``(train, eval)`` as the config says; unknown objective names are errors."""
    if config.task is not None:
        from moalign.tasks import BundledTaskConfig, build_synthetic_task, load_or_build_bundled_task
        from moalign.models import resolve_model_path

        task_config = BundledTaskConfig(seed=config.seed)
        if config.task == "synthetic":
            data = build_synthetic_task(task_config)
        else:
            data, _ = load_or_build_bundled_task(resolve_model_path(config.model), task_config)
    elif config.train_files:
        data = _load_files(config.train_files, config)
    else:
        raise DataError("no training data: set train_files (or task: bundled | synthetic)")
    if config.objectives is not None:
        data = data.select_objectives(config.objectives)
    if config.eval_files:
        train, evaluation = data, _load_files(config.eval_files, config)
        if config.objectives is not None:
            evaluation = evaluation.select_objectives(config.objectives)
    else:
        train, evaluation = data.split(config.eval_fraction, seed=config.seed)
    if config.max_train_pairs is not None:
        train = PreferenceDataset(train.pairs[: config.max_train_pairs], train.objectives)
    return train, evaluation
