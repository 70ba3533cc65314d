"""Evaluation prompt sets: instructions, optionally with a reference ("golden") response each.

AlpacaEval's files (``instruction``, ``output``) and plain prompt lists (``prompt``) load the same way;
:func:`load_prompts` also takes the prompts of preference files through their adapter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from moalign.data.loaders import read_records
from moalign.data.schema import DataError

PROMPT_FIELDS = ("prompt", "instruction")
REFERENCE_FIELDS = ("output", "reference", "response")


@dataclass
class PromptSet:
    """Prompts in file order and, when the file has them, one reference response per prompt."""

    prompts: list[str]
    references: list[str] | None = None

    def head(self, n: int | None) -> PromptSet:
        """The first ``n`` prompts (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"the number of prompts must be at least 1, got {n}")
        return PromptSet(self.prompts[:n], None if self.references is None else self.references[:n])


def _pick_field(record: dict, wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted
    return next((name for name in candidates if name in record), None)


def load_prompt_set(
    source: str | os.PathLike[str],
    *,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    require_references: bool = False,
    split: str = "train",
) -> PromptSet:
    """Read prompts (field ``prompt_field``, else ``prompt`` or ``instruction``) and references (field
    ``reference_field``, else ``output``, ``reference`` or ``response``) from any file ``read_records`` reads.

    References are all-or-none, decided by the first row: a later row without one is an error, as is an
    empty or non-string prompt.
    """
    prompts: list[str] = []
    references: list[str] = []
    ref_field = reference_field
    for row, record in read_records(source, split=split):
        field = _pick_field(record, prompt_field, PROMPT_FIELDS)
        if field is None or field not in record:
            wanted = field or " or ".join(PROMPT_FIELDS)
            raise DataError(f"missing prompt field {wanted!r}; fields are {sorted(record)}", source=str(source), row=row)
        prompt = record[field]
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError("prompt must be a non-empty string", source=str(source), row=row, field=field)
        prompts.append(prompt)
        if ref_field is None and len(prompts) == 1:  # the first row decides whether the file has references
            ref_field = _pick_field(record, None, REFERENCE_FIELDS)
        if ref_field is None:
            stray = _pick_field(record, None, REFERENCE_FIELDS)
            if stray is not None:
                raise DataError(f"has reference field {stray!r} but the first row has none; references go in every row "
                                "or in none", source=str(source), row=row)
            continue
        if ref_field not in record:
            raise DataError(f"missing reference field {ref_field!r}", source=str(source), row=row)
        if not isinstance(record[ref_field], str):
            raise DataError("reference response must be a string", source=str(source), row=row, field=ref_field)
        references.append(record[ref_field])
    if not prompts:
        raise DataError("no prompts", source=str(source))
    if require_references and not references:
        raise DataError(f"no reference responses (looked for {' / '.join(REFERENCE_FIELDS)})", source=str(source))
    return PromptSet(prompts, references or None)


def distinct_prompts(prompts: Iterable[Any]) -> list[Any]:
    """``prompts`` (strings or chat message lists) without repeats, in first-seen order."""
    seen, distinct = set(), []
    for prompt in prompts:
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            distinct.append(prompt)
    return distinct


def check_prompt_adapter(adapter: str, name: str = "prompt adapter") -> None:
    """Raise :class:`DataError` unless ``adapter`` reads prompts: ``prompts`` (prompt files) or one of
    :data:`ADAPTERS` (the prompts of preference files); ``name`` is what the message calls it."""
    from moalign.data.adapters import ADAPTERS

    if adapter != "prompts" and adapter not in ADAPTERS:
        raise DataError(f"unknown {name} {adapter!r}; use prompts or one of {sorted(ADAPTERS)}")


def load_prompts(sources: Sequence[str | os.PathLike[str]], adapter: str = "prompts") -> list[Any]:
    """The distinct prompts of ``sources`` in file order: prompt files (``adapter`` ``prompts``: field prompt or
    instruction) or preference files read through one of :data:`ADAPTERS` (HH-RLHF dialogues stay chat message
    lists, so a model sees every earlier turn)."""
    from moalign.data.loaders import load_preference_data

    check_prompt_adapter(adapter)
    if adapter == "prompts":
        prompts: list[Any] = [p for source in sources for p in load_prompt_set(source).prompts]
    else:
        prompts = [pair.prompt for source in sources for pair in load_preference_data(source, adapter=adapter).pairs]
    return distinct_prompts(prompts)
