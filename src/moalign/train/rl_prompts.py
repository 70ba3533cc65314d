"""Where RL prompts come from: the bundled task, prompt-only files (AlpacaEval instructions included), or the
distinct prompts of preference files read through their adapter (HH-RLHF dialogues stay conversations)."""

from __future__ import annotations

from typing import Any

from moalign.data import DataError, distinct_prompts, load_prompts


def load_rl_prompts(config: Any) -> list[Any]:
    """The config's prompts (strings or chat message lists), in file order, distinct, at most ``max_prompts``."""
    if config.task == "bundled":
        from moalign.tasks import bundled_prompts

        distinct = distinct_prompts(bundled_prompts(seed=config.seed))
    else:
        distinct = load_prompts(config.prompt_files, config.prompt_adapter)
    if not distinct:
        raise DataError("no prompts")
    return distinct[:config.max_prompts] if config.max_prompts else distinct
