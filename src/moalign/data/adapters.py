"""Adapters from public preference formats to :class:`PreferencePair`.

Each adapter reads ``(row_number, record)`` items and yields ``(row_number, pair_or_error)``: a bad
row becomes a :class:`DataError` value instead of stopping the stream, so the loader can either
raise it (the default) or count and drop it (``drop_invalid``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from moalign.data.schema import DataError, Label, Message, PreferencePair, make_pair

Rows = Iterable[tuple[int, dict[str, Any]]]
Converted = Iterator[tuple[int, "PreferencePair | DataError"]]

HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"
ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def _require(record: dict[str, Any], names: Sequence[str], row: int) -> None:
    for name in names:
        if name not in record:
            raise DataError(f"missing column; the row has {sorted(record)}", row=row, field=name)


def native(rows: Rows, *, tie_margin: float = 0.0) -> Converted:
    """moalign's own form: ``prompt, response_a, response_b`` and ``labels``/``scores_a``/``scores_b``.

    Labels and scores are nested mappings (JSON, Parquet) or flat columns ``label_<objective>``,
    ``score_a_<objective>``, ``score_b_<objective>`` (CSV).
    """
    for row, record in rows:
        try:
            _require(record, ("prompt", "response_a", "response_b"), row)
            for key in ("labels", "scores_a", "scores_b"):
                if record.get(key) is not None and not isinstance(record[key], dict):
                    raise DataError("must be a mapping from objective name", row=row, field=key)
            labels = dict(record.get("labels") or {})
            scores_a = dict(record["scores_a"]) if record.get("scores_a") is not None else None
            scores_b = dict(record["scores_b"]) if record.get("scores_b") is not None else None
            for key, value in record.items():
                if key.startswith("label_"):
                    labels[key[len("label_"):]] = value
                elif key.startswith("score_a_"):
                    scores_a = {**(scores_a or {}), key[len("score_a_"):]: value}
                elif key.startswith("score_b_"):
                    scores_b = {**(scores_b or {}), key[len("score_b_"):]: value}
            yield row, make_pair(record["prompt"], record["response_a"], record["response_b"], labels,
                                 scores_a, scores_b, tie_margin=tie_margin, row=row)
        except DataError as exc:
            yield row, exc


def split_hh_dialogue(chosen: str, rejected: str, row: int | None = None) -> tuple[str, str, str]:
    """Split HH-RLHF's two full dialogues into (prompt, chosen response, rejected response).

    The prompt is the prefix both dialogues share, cut after its last ``"\\n\\nAssistant:"``; a
    response may itself contain such a marker (a few real rows do), so the chosen text alone is not
    enough to find the cut.
    """
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(HH_ASSISTANT)
    if cut < 0:
        field = "chosen" if HH_ASSISTANT not in chosen else "rejected"
        raise DataError(f"the dialogues share no {HH_ASSISTANT.strip()!r} turn", row=row, field=field)
    prompt = shared[: cut + len(HH_ASSISTANT)]
    return prompt, chosen[len(prompt):].strip(), rejected[len(prompt):].strip()


def hh_prompt_to_messages(prompt: str) -> list[Message]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:"`` -> user/assistant/user messages."""
    messages: list[Message] = []
    body = prompt[: -len(HH_ASSISTANT)] if prompt.endswith(HH_ASSISTANT) else prompt
    for chunk in body.split(HH_HUMAN)[1:]:
        human, *assistant = chunk.split(HH_ASSISTANT)
        messages.append({"role": "user", "content": human.strip()})
        for turn in assistant:
            messages.append({"role": "assistant", "content": turn.strip()})
    return [m for m in messages if m["content"]]


def hh_rlhf(rows: Rows, *, objective: str = "helpful", conversational: bool = True) -> Converted:
    """HH-RLHF ``chosen, rejected`` dialogues, one objective per file (``objective``). ``chosen`` becomes A;
    a pair whose two answers are identical is a tie (``moalign data check`` counts them).

    An empty final answer is kept: in HH-RLHF it is a real response that raters compared (an empty
    reply is sometimes the harmless choice), and it is trained on as a lone eos token.

    With ``conversational`` the prompt becomes chat messages (rendered by the model's template);
    otherwise it stays the raw ``Human:/Assistant:`` text.
    """
    for row, record in rows:
        try:
            _require(record, ("chosen", "rejected"), row)
            prompt, chosen, rejected = split_hh_dialogue(record["chosen"], record["rejected"], row)
            if conversational:
                messages = hh_prompt_to_messages(prompt)
                if not messages:
                    raise DataError("the dialogue has no human turn before the answer", row=row, field="chosen")
                prompt = messages
            label = Label.TIE if chosen == rejected else Label.A  # identical answers: a tie, counted as one
            yield row, make_pair(prompt, chosen, rejected, {objective: label}, row=row, allow_empty_response=True)
        except DataError as exc:
            yield row, exc


def pku_saferlhf(rows: Rows) -> Converted:
    """PKU-SafeRLHF: ``better_response_id`` labels ``helpful``, ``safer_response_id`` labels ``harmless``."""
    for row, record in rows:
        try:
            _require(record, ("prompt", "response_0", "response_1", "better_response_id", "safer_response_id"), row)
            labels: dict[str, Label] = {}
            for column, objective in (("better_response_id", "helpful"), ("safer_response_id", "harmless")):
                value = record[column]
                if value not in (0, 1) or isinstance(value, bool):
                    raise DataError(f"expected 0 or 1, got {value!r}", row=row, field=column)
                labels[objective] = Label.A if value == 0 else Label.B
            yield row, make_pair(record["prompt"], record["response_0"], record["response_1"], labels, row=row)
        except DataError as exc:
            yield row, exc


def _ultrafeedback_rating(completion: dict[str, Any], aspect: str, row: int, index: int) -> float | None:
    annotation = (completion.get("annotations") or {}).get(aspect)
    field_name = f"completions[{index}].annotations.{aspect}"
    if annotation is None:
        return None
    rating = annotation.get("Rating") if isinstance(annotation, dict) else None
    if rating in (None, "N/A", "n/a", ""):
        return None
    try:
        return float(rating)
    except (TypeError, ValueError):
        raise DataError(f"rating {rating!r} is not a number", row=row, field=field_name) from None


def ultrafeedback(rows: Rows, *, aspects: Sequence[str] = ULTRAFEEDBACK_ASPECTS) -> Converted:
    """Raw UltraFeedback: every pair of a prompt's completions, labelled per aspect by its ``Rating``.

    Equal ratings are ties; an ``N/A`` rating leaves that aspect absent for the pair.
    """
    for row, record in rows:
        try:
            _require(record, ("instruction", "completions"), row)
            completions = record["completions"]
            if not isinstance(completions, list) or len(completions) < 2:
                raise DataError("need at least two completions", row=row, field="completions")
            scored = []
            for i, completion in enumerate(completions):
                if not isinstance(completion, dict) or "response" not in completion:
                    raise DataError("completion has no 'response'", row=row, field=f"completions[{i}]")
                ratings = {a: _ultrafeedback_rating(completion, a, row, i) for a in aspects}
                scored.append((completion["response"], {a: r for a, r in ratings.items() if r is not None}))
        except DataError as exc:
            yield row, exc
            continue
        for (resp_a, scores_a), (resp_b, scores_b) in itertools.combinations(scored, 2):
            try:
                yield row, make_pair(record["instruction"], resp_a, resp_b, None, scores_a, scores_b, row=row)
            except DataError as exc:
                yield row, exc


def helpsteer2(rows: Rows, *, attributes: Sequence[str] = HELPSTEER2_ATTRIBUTES) -> Converted:
    """HelpSteer2: two consecutive rows per prompt, labelled per attribute by the 0-4 scores."""
    iterator = iter(rows)
    for row, first in iterator:
        second_item = next(iterator, None)
        if second_item is None:
            yield row, DataError("odd number of rows: this response has no partner", row=row, field="prompt")
            return
        row_b, second = second_item
        try:
            _require(first, ("prompt", "response", *attributes), row)
            _require(second, ("prompt", "response", *attributes), row_b)
            if first["prompt"] != second["prompt"]:
                raise DataError(f"consecutive rows {row} and {row_b} have different prompts", row=row_b, field="prompt")
            yield row, make_pair(
                first["prompt"], first["response"], second["response"], None,
                {a: first[a] for a in attributes}, {a: second[a] for a in attributes}, row=row,
            )
        except DataError as exc:
            yield row, exc


ADAPTERS: dict[str, Callable[..., Converted]] = {
    "native": native,
    "hh_rlhf": hh_rlhf,
    "pku_saferlhf": pku_saferlhf,
    "ultrafeedback": ultrafeedback,
    "helpsteer2": helpsteer2,
}
