"""Ready-made multi-objective tasks: the bundled task (real model samples) and its fast synthetic variant."""

from moalign.tasks.bundled import (
    BundledTaskConfig,
    build_bundled_task,
    build_synthetic_task,
    load_or_build_bundled_task,
    pairs_from_responses,
    synthetic_responses,
)
from moalign.tasks.prompts import bundled_prompts

__all__ = [
    "BundledTaskConfig",
    "build_bundled_task",
    "build_synthetic_task",
    "bundled_prompts",
    "load_or_build_bundled_task",
    "pairs_from_responses",
    "synthetic_responses",
]
