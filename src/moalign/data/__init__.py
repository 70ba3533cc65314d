"""Multi-objective preference data: schema, loaders and adapters, collation, summaries."""

from moalign.data.adapters import ADAPTERS, hh_prompt_to_messages, split_hh_dialogue
from moalign.data.loaders import load_preference_data, read_records, save_preference_data
from moalign.data.prompt_sets import PromptSet, check_prompt_adapter, distinct_prompts, load_prompt_set, load_prompts
from moalign.data.sampler import LEFTOVER_RULES, StepSampler
from moalign.data.schema import (
    DataError,
    Label,
    PreferenceDataset,
    PreferencePair,
    concat_datasets,
    labels_from_scores,
    make_pair,
    parse_label,
)
from moalign.data.stats import disagreement_rate, format_summary, summarize
from moalign.data.training import load_preference_files, load_training_data

__all__ = [
    "ADAPTERS",
    "LEFTOVER_RULES",
    "DataError",
    "Label",
    "PreferenceCollator",
    "PreferenceDataset",
    "PreferencePair",
    "PromptSet",
    "StepSampler",
    "concat_datasets",
    "disagreement_rate",
    "format_summary",
    "hh_prompt_to_messages",
    "labels_from_scores",
    "load_preference_data",
    "load_preference_files",
    "load_prompt_set",
    "load_prompts",
    "distinct_prompts",
    "check_prompt_adapter",
    "load_training_data",
    "make_pair",
    "parse_label",
    "read_records",
    "save_preference_data",
    "split_hh_dialogue",
    "summarize",
]


def __getattr__(name: str):
    if name == "PreferenceCollator":  # keeps `import moalign.data` free of torch
        from moalign.data.collate import PreferenceCollator

        return PreferenceCollator
    raise AttributeError(name)
