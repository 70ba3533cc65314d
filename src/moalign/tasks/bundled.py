"""The bundled multi-objective task: moalign's own prompts, responses sampled from a model, labels from scorers.

Each prompt gets several responses (varied temperature and length); every two responses of a prompt
form a pair, labelled per objective by the offline scorers. The default objectives pull apart:
``informative`` rewards longer answers, ``readable`` rewards short sentences and plain words (which
long answers tend to lose), ``warm`` rewards a friendly tone. The build is seeded and cached.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moalign.data import PreferenceDataset, PreferencePair, load_preference_data, make_pair, save_preference_data
from moalign.objectives import Scorer, get_scorer
from moalign.storage import cache_dir, write_json_atomic
from moalign.tasks.prompts import bundled_prompts

#: Score differences within these margins count as ties (scores as oriented by each scorer's ``reward``).
DEFAULT_TIE_MARGINS = {
    "informative": 0.1, "concise": 0.1, "length": 0.1,
    "readable": 5.0, "readability": 5.0,
    "warm": 0.05, "sentiment": 0.05,
    "toxicity": 0.02,
}


@dataclass
class BundledTaskConfig:
    """How the bundled task is built.

    Parameters:
        objectives: built-in scorer names (see ``moalign.objectives.SCORERS``), one per objective.
        n_prompts: how many bundled prompts to use (at most 336).
        samples: one ``(temperature, max_new_tokens)`` per response drawn for each prompt.
        batch_size: prompts per generation batch (larger batches generate faster per prompt on CPU).
        seed: seeds prompt order and sampling; the same seed gives the same task.
        tie_margins: per objective, score differences at or below this are ties.
    """

    objectives: tuple[str, ...] = ("informative", "readable", "warm")
    n_prompts: int = 160
    samples: tuple[tuple[float, int], ...] = ((0.7, 16), (1.0, 32), (0.9, 48))
    batch_size: int = 48
    seed: int = 0
    tie_margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIE_MARGINS))

    def scorers(self) -> list[Scorer]:
        return [get_scorer(name) for name in self.objectives]


def pairs_from_responses(
    prompts: Sequence[str],
    responses: Sequence[Sequence[str]],
    scorers: Sequence[Scorer],
    tie_margins: dict[str, float],
    seed: int = 0,
) -> list[PreferencePair]:
    """Score every response, then pair up the non-empty responses of each prompt (all two-combinations).

    Which response of a pair is A is drawn at random (seeded), so the label balance reflects the
    objectives and not the order in which responses were sampled.
    """
    rng = random.Random(seed)
    flat_prompts = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_responses = [r for rs in responses for r in rs]
    rewards = {s.name: s.reward(flat_prompts, flat_responses) for s in scorers}
    pairs, offset = [], 0
    for prompt, group in zip(prompts, responses):
        items = [
            (text, {name: float(values[offset + j]) for name, values in rewards.items()})
            for j, text in enumerate(group)
            if text.strip()
        ]
        offset += len(group)
        for first, second in itertools.combinations(items, 2):
            (text_a, scores_a), (text_b, scores_b) = (first, second) if rng.random() < 0.5 else (second, first)
            pairs.append(make_pair(prompt, text_a, text_b, None, scores_a, scores_b, tie_margin=tie_margins))
    return pairs


def build_bundled_task(model: Any, tokenizer: Any, config: BundledTaskConfig, *, progress: bool = True) -> PreferenceDataset:
    """Sample ``len(config.samples)`` responses per prompt from ``model`` and label all pairs."""
    from moalign.models.generation import generate_responses

    prompts = bundled_prompts(config.n_prompts, seed=config.seed)
    columns = [
        generate_responses(
            model, tokenizer, prompts, max_new_tokens=max_new, temperature=temperature, top_p=0.95,
            batch_size=config.batch_size, seed=config.seed * 101 + i, progress=progress,
            desc=f"sampling responses {i + 1}/{len(config.samples)}",
        )
        for i, (temperature, max_new) in enumerate(config.samples)
    ]
    pairs = pairs_from_responses(prompts, list(zip(*columns)), config.scorers(), config.tie_margins, config.seed)
    return PreferenceDataset(pairs, config.objectives)


_WARM_OPENERS = ["Great question!", "I'd be happy to help!", "Thanks for asking, that's a lovely thing to wonder about!"]
_WARM_CLOSERS = ["I hope this helps, and good luck!", "You've got this!", "Wishing you all the best!"]
_COLD = ["Unfortunately this is often difficult and frustrating.", "Many people fail at this."]
_PLAIN = ["Start small.", "Take one step at a time.", "Try it for a week.", "Ask a friend to join you.",
          "Write down what works.", "Keep going on slow days.", "Make it part of your day."]
_TECHNICAL = ["Systematic evaluation of alternative configurations necessitates quantifiable criteria.",
              "Physiological adaptation generally accompanies consistent, deliberate repetition.",
              "Comprehensive documentation facilitates incremental methodological optimisation.",
              "Environmental considerations substantially influence longitudinal outcomes."]


def synthetic_responses(prompts: Sequence[str], per_prompt: int = 3, seed: int = 0) -> list[list[str]]:
    """Template responses with a controlled length, tone and vocabulary, for fast offline tests.

    Longer responses use more technical sentences, so length and readability conflict as they do in
    real model outputs; tone is drawn independently.
    """
    rng = random.Random(seed)
    out = []
    for _ in prompts:
        group = []
        for _ in range(per_prompt):
            n = rng.randint(1, 7)
            body = [rng.choice(_TECHNICAL) if rng.random() < n / 8 else rng.choice(_PLAIN) for _ in range(n)]
            tone = rng.random()
            if tone < 0.4:
                body = [rng.choice(_WARM_OPENERS), *body, rng.choice(_WARM_CLOSERS)]
            elif tone < 0.6:
                body.append(rng.choice(_COLD))
            group.append(" ".join(body))
        out.append(group)
    return out


def build_synthetic_task(config: BundledTaskConfig) -> PreferenceDataset:
    """The bundled task's fast variant: the same prompts and scorers, template responses instead of sampling."""
    prompts = bundled_prompts(config.n_prompts, seed=config.seed)
    responses = synthetic_responses(prompts, len(config.samples), seed=config.seed)
    pairs = pairs_from_responses(prompts, responses, config.scorers(), config.tie_margins, config.seed)
    return PreferenceDataset(pairs, config.objectives)


def task_cache_path(model_id: str, config: BundledTaskConfig, cache: str | Path | None = None) -> Path:
    """Where the task built from ``model_id`` with ``config`` is cached (a hash of both)."""
    key = hashlib.sha1(json.dumps({"model": model_id, **asdict(config)}, sort_keys=True).encode()).hexdigest()[:12]
    return (Path(cache) if cache is not None else cache_dir()) / "tasks" / f"bundled-{key}.jsonl"


def load_or_build_bundled_task(
    model_path: str | Path, config: BundledTaskConfig, *, cache: str | Path | None = None, progress: bool = True
) -> tuple[PreferenceDataset, Path]:
    """Return the cached task for (model, config), building and caching it first if needed."""
    path = task_cache_path(str(model_path), config, cache)
    if not path.exists():
        from moalign.models import load_model, load_tokenizer

        model, tokenizer = load_model(model_path), load_tokenizer(model_path)
        dataset = build_bundled_task(model, tokenizer, config, progress=progress)
        save_preference_data(dataset, path)
        write_json_atomic(path.with_suffix(".meta.json"), {"model": str(model_path), "config": asdict(config)})
    return load_preference_data(path, objectives=config.objectives), path
