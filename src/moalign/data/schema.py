"""The in-memory schema for multi-objective preference data.

A :class:`PreferencePair` holds one prompt, two responses and, per named objective, which response is
preferred: ``Label.A``, ``Label.B`` or ``Label.TIE``. An objective the pair says nothing about is
simply absent from ``labels`` and is masked in training (HH-RLHF pairs each carry one objective). A
pair with no label at all is an error. Labels can also be derived from per-response scores.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from moalign.errors import MoalignError

Message = dict[str, str]
Prompt = Union[str, list[Message]]
CHAT_ROLES = ("system", "user", "assistant")


class DataError(MoalignError, ValueError):
    """Bad preference data, located by source, row and field."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None, field: str | None = None):
        self.reason, self.source, self.row, self.field = message, source, row, field
        where = ", ".join(
            part
            for part in (
                str(source) if source is not None else None,
                f"row {row}" if row is not None else None,
                f"field {field!r}" if field is not None else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, source: str) -> DataError:
        """The same error with ``source`` filled in, for loaders that know the file name."""
        return DataError(self.reason, source=self.source or source, row=self.row, field=self.field)


class Label(enum.IntEnum):
    """Which response an objective prefers. The sign convention is used directly by the losses."""

    A = 1
    B = -1
    TIE = 0


_LABEL_NAMES = {"a": Label.A, "first": Label.A, "b": Label.B, "second": Label.B, "tie": Label.TIE}
_ABSENT = ("", "none", "null", "absent", "na", "n/a")


def parse_label(value: Any) -> Label | None:
    """Read a label: ``"a"``/``"first"``, ``"b"``/``"second"``, ``"tie"``; ``None`` or ``""`` means absent."""
    if isinstance(value, Label):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _ABSENT:
            return None
        if key in _LABEL_NAMES:
            return _LABEL_NAMES[key]
    raise ValueError(f"unknown label {value!r}; use 'a', 'b', 'tie' or leave it empty for absent")


def labels_from_scores(
    scores_a: Mapping[str, float], scores_b: Mapping[str, float], tie_margin: float | Mapping[str, float] = 0.0
) -> dict[str, Label]:
    """Label each objective scored on both sides: the higher score wins, within the tie margin it is a tie.

    ``tie_margin`` is one number for all objectives or a mapping per objective (missing ones use 0).
    """
    labels: dict[str, Label] = {}
    for name in scores_a.keys() & scores_b.keys():
        margin = tie_margin.get(name, 0.0) if isinstance(tie_margin, Mapping) else tie_margin
        a, b = scores_a[name], scores_b[name]
        if a is None or b is None:
            continue
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            raise ValueError(f"score for objective {name!r} is NaN")
        labels[name] = Label.TIE if abs(a - b) <= margin else (Label.A if a > b else Label.B)
    return {name: labels[name] for name in scores_a if name in labels}


def check_prompt(prompt: Any) -> Prompt:
    """Return ``prompt`` if it is a non-empty string or a non-empty list of chat messages, else raise."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("prompt is empty")
        return prompt
    if isinstance(prompt, list) and prompt:
        for i, message in enumerate(prompt):
            if not isinstance(message, Mapping) or set(message) - {"role", "content"} or "role" not in message:
                raise ValueError(f"message {i} must be a {{'role', 'content'}} mapping, got {message!r}")
            if message["role"] not in CHAT_ROLES:
                raise ValueError(f"message {i} has role {message['role']!r}; roles are {CHAT_ROLES}")
            if not isinstance(message.get("content"), str) or not message["content"].strip():
                raise ValueError(f"message {i} has empty or non-text content")
        return [dict(m) for m in prompt]
    raise ValueError(f"prompt must be a non-empty string or list of messages, got {type(prompt).__name__}")


@dataclass(frozen=True)
class PreferencePair:
    """One prompt, two responses, and per-objective preferences (absent objectives are not stored)."""

    prompt: Prompt
    response_a: str
    response_b: str
    labels: Mapping[str, Label]
    scores_a: Mapping[str, float] | None = None
    scores_b: Mapping[str, float] | None = None

    def to_record(self) -> dict[str, Any]:
        """The native JSON form, readable by :func:`moalign.data.load_preference_data`."""
        record: dict[str, Any] = {
            "prompt": self.prompt,
            "response_a": self.response_a,
            "response_b": self.response_b,
            "labels": {k: v.name.lower() for k, v in self.labels.items()},
        }
        if self.scores_a is not None:
            record["scores_a"] = dict(self.scores_a)
        if self.scores_b is not None:
            record["scores_b"] = dict(self.scores_b)
        return record


def make_pair(
    prompt: Any,
    response_a: Any,
    response_b: Any,
    labels: Mapping[str, Any] | None = None,
    scores_a: Mapping[str, Any] | None = None,
    scores_b: Mapping[str, Any] | None = None,
    *,
    tie_margin: float | Mapping[str, float] = 0.0,
    row: int | None = None,
    allow_empty_response: bool = False,
) -> PreferencePair:
    """Validate raw fields into a :class:`PreferencePair`, raising :class:`DataError` naming the field.

    Explicit labels win; objectives with scores on both sides but no explicit label get a derived one.
    Empty responses are errors unless ``allow_empty_response`` (for formats where they are real data).
    """
    try:
        prompt = check_prompt(prompt)
    except ValueError as exc:
        raise DataError(str(exc), row=row, field="prompt") from None
    for name, text in (("response_a", response_a), ("response_b", response_b)):
        if not isinstance(text, str):
            raise DataError(f"response must be text, got {type(text).__name__}", row=row, field=name)
        if not text.strip() and not allow_empty_response:
            raise DataError("response is empty", row=row, field=name)
    parsed: dict[str, Label] = {}
    for name, value in (labels or {}).items():
        try:
            label = parse_label(value)
        except ValueError as exc:
            raise DataError(str(exc), row=row, field=f"labels.{name}") from None
        if label is not None:
            parsed[str(name)] = label
    clean_a = _clean_scores(scores_a, row, "scores_a")
    clean_b = _clean_scores(scores_b, row, "scores_b")
    if clean_a and clean_b:
        for name, label in labels_from_scores(clean_a, clean_b, tie_margin).items():
            parsed.setdefault(name, label)
    if not parsed:
        raise DataError("the pair has no label for any objective", row=row, field="labels")
    return PreferencePair(prompt, response_a, response_b, parsed, clean_a, clean_b)


def _clean_scores(scores: Mapping[str, Any] | None, row: int | None, field_name: str) -> dict[str, float] | None:
    if scores is None:
        return None
    clean: dict[str, float] = {}
    for name, value in scores.items():
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"score {value!r} is not a number", row=row, field=f"{field_name}.{name}") from None
        if not math.isfinite(number):
            raise DataError(f"score is {number}", row=row, field=f"{field_name}.{name}")
        clean[str(name)] = number
    return clean


@dataclass
class PreferenceDataset:
    """An ordered collection of pairs over a fixed, named list of objectives.

    ``objectives`` defaults to every objective labelled anywhere, in first-seen order. ``dropped``
    counts rows a loader skipped because ``drop_invalid`` was asked for.
    """

    pairs: list[PreferencePair]
    objectives: tuple[str, ...] = ()
    dropped: int = 0
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.objectives:
            seen: dict[str, None] = {}
            for pair in self.pairs:
                seen.update(dict.fromkeys(pair.labels))
            self.objectives = tuple(seen)
        self.objectives = tuple(self.objectives)
        duplicates = sorted({o for o in self.objectives if self.objectives.count(o) > 1})
        if duplicates:
            raise DataError(f"duplicate objective name(s) {duplicates}", source=self.source)
        known = set(self.objectives)
        for i, pair in enumerate(self.pairs):
            unknown = set(pair.labels) - known
            if unknown:
                raise DataError(
                    f"label for unknown objective(s) {sorted(unknown)}; objectives are {list(self.objectives)}",
                    source=self.source,
                    row=i,
                    field="labels",
                )
            if not pair.labels:
                raise DataError("the pair has no label for any objective", source=self.source, row=i, field="labels")

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[PreferencePair]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> PreferencePair:
        return self.pairs[index]

    def label_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, present)``: int8 ``(N, K)`` signs (+1 A, -1 B, 0 tie) and a bool mask of present labels."""
        labels = np.zeros((len(self.pairs), len(self.objectives)), dtype=np.int8)
        present = np.zeros_like(labels, dtype=bool)
        for i, pair in enumerate(self.pairs):
            for k, name in enumerate(self.objectives):
                if name in pair.labels:
                    labels[i, k] = int(pair.labels[name])
                    present[i, k] = True
        return labels, present

    def select_objectives(self, names: Sequence[str]) -> PreferenceDataset:
        """Keep only ``names``; pairs left with no label for them are removed (they carry no signal)."""
        unknown = [n for n in names if n not in self.objectives]
        if unknown:
            raise DataError(f"unknown objective(s) {unknown}; objectives are {list(self.objectives)}")
        kept = [
            PreferencePair(p.prompt, p.response_a, p.response_b, {n: p.labels[n] for n in names if n in p.labels},
                           p.scores_a, p.scores_b)
            for p in self.pairs
            if any(n in p.labels for n in names)
        ]
        return PreferenceDataset(kept, tuple(names), source=self.source)

    def split(self, test_fraction: float, seed: int = 0) -> tuple[PreferenceDataset, PreferenceDataset]:
        """A seeded random split into (train, test) over the same objectives."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = list(range(len(self.pairs)))
        random.Random(seed).shuffle(order)
        n_test = max(1, round(test_fraction * len(order)))
        test = [self.pairs[i] for i in sorted(order[:n_test])]
        train = [self.pairs[i] for i in sorted(order[n_test:])]
        return PreferenceDataset(train, self.objectives), PreferenceDataset(test, self.objectives)

    def to_records(self) -> list[dict[str, Any]]:
        return [pair.to_record() for pair in self.pairs]


def concat_datasets(datasets: Iterable[PreferenceDataset]) -> PreferenceDataset:
    """Join datasets; the objectives are the union in order (e.g. HH-RLHF helpful + harmless)."""
    datasets = list(datasets)
    objectives: dict[str, None] = {}
    for ds in datasets:
        objectives.update(dict.fromkeys(ds.objectives))
    return PreferenceDataset(
        [p for ds in datasets for p in ds.pairs], tuple(objectives), dropped=sum(ds.dropped for ds in datasets)
    )
