"""Where RL prompts come from: the bundled task, prompt-only files (AlpacaEval instructions included), or the
distinct prompts of preference files read through their adapter (HH-RLHF dialogues stay conversations)."""

from __future__ import annotations

import json
from typing import Any

from moalign.config import ConfigError
from moalign.data import ADAPTERS, DataError, load_preference_data, load_prompt_set


def load_rl_prompts(config: Any) -> list[Any]:
    """The config's prompts (strings or chat message lists), in file order, distinct, at most ``max_prompts``."""
    if config.task == "bundled":
        from moalign.tasks import bundled_prompts

        prompts: list[Any] = bundled_prompts(seed=config.seed)
    elif config.prompt_adapter == "prompts":
        prompts = [p for path in config.prompt_files for p in load_prompt_set(path).prompts]
    elif config.prompt_adapter in ADAPTERS:
        prompts = [pair.prompt for path in config.prompt_files
                   for pair in load_preference_data(path, adapter=config.prompt_adapter).pairs]
    else:
        raise ConfigError(f"unknown prompt_adapter {config.prompt_adapter!r}; use prompts or one of {sorted(ADAPTERS)}")
    seen, distinct = set(), []
    for prompt in prompts:
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            distinct.append(prompt)
    if not distinct:
        raise DataError("no prompts")
    return distinct[:config.max_prompts] if config.max_prompts else distinct
