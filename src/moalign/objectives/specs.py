"""Rewards named in configs and on the command line: ``NAME`` (a built-in scorer) or ``NAME=rm:PATH[:HEAD]``
(one head of a sequence-classification reward model, by index or ``id2label`` name; a Hub name or a folder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moalign.config import ConfigError
from moalign.objectives.base import Scorer
from moalign.objectives.scorers import SCORERS, get_scorer


def parse_reward_spec(text: str) -> tuple[str, str | None, int | str]:
    """``"helpful=rm:runs/rm/final:helpful"`` -> ``("helpful", "runs/rm/final", "helpful")``;
    ``"sentiment"`` -> ``("sentiment", None, 0)``."""
    text = text.strip()
    if "=" not in text:
        if text not in SCORERS:
            raise ConfigError(f"unknown reward {text!r}: built-in scorers are {sorted(SCORERS)}, or give a reward "
                              "model as NAME=rm:PATH[:HEAD]")
        return text, None, 0
    name, _, source = text.partition("=")
    name, rest = name.strip(), source[3:]
    if not name or not source.startswith("rm:") or not rest:
        raise ConfigError(f"bad reward {text!r}; use NAME (a built-in scorer) or NAME=rm:PATH[:HEAD]")
    # a folder whose name has a colon is taken whole; otherwise the last ":PART" is the head
    path, _, head = rest.rpartition(":") if ":" in rest and not Path(rest).exists() else (rest, "", "")
    hub_name = path.count("/") == 1 and not path.startswith((".", "/", "~"))
    if not Path(path).exists() and not hub_name:
        raise ConfigError(f"reward {name!r}: no reward model folder {path}")
    return name, path, int(head) if head.isdigit() else (head or 0)


def build_rewards(specs: Sequence[str], *, device: Any = None, batch_size: int = 8,
                  max_length: int | None = None) -> list[Scorer]:
    """One scorer per spec, in order; heads of one reward model share one loaded copy. A reward model that
    cannot be loaded is a :class:`ConfigError` naming the objective and the path. Reward models score texts of
    at most ``max_length`` tokens, by default the limit they were trained with (see
    :func:`~moalign.objectives.reward_model.scoring_length`)."""
    names = [parse_reward_spec(s)[0] for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"reward names must be distinct, got {names}")
    loaded: dict[str, tuple[Any, Any]] = {}
    scorers: list[Scorer] = []
    for spec in specs:
        name, path, head = parse_reward_spec(spec)
        if path is None:
            scorers.append(get_scorer(name))
            continue
        from moalign.objectives.reward_model import RewardModelScorer, load_reward_model, scoring_length

        if path not in loaded:
            try:
                loaded[path] = load_reward_model(path, device=device)
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"reward model for {name!r} could not be loaded from {path}: {exc}") from None
        model, tokenizer = loaded[path]
        try:
            scorers.append(RewardModelScorer(name, model, tokenizer, head=head, batch_size=batch_size,
                                             max_length=scoring_length(path, max_length)))
        except ValueError as exc:
            raise ConfigError(f"reward {name!r}: {exc}") from None
    return scorers
