"""Front sweeps: for each preference, generate on a fixed prompt set and score every objective, cached on disk.

A method is anything that turns ``(preference, prompts)`` into responses: a HoE model routing by the
preference, one model per preference, an interpolation of expert weights, or a single model that
ignores the preference (one point). Generations and scores are cached per (method, preference,
prompts, settings), so a rerun or a new metric never regenerates. Each cache file starts with the full
fingerprint of what it was written for; a file for other prompts or settings, or an incomplete one, is
regenerated, never averaged in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moalign.objectives import Scorer

logger = logging.getLogger(__name__)

Generate = Callable[[np.ndarray, list[str]], list[str]]


@dataclass
class FrontPoint:
    """One method at one preference: mean reward per objective and the per-prompt rewards behind it."""

    method: str
    preference: list[float]
    per_prompt: np.ndarray  # (N prompts, K objectives)

    @property
    def scores(self) -> np.ndarray:
        return self.per_prompt.mean(axis=0)


def _fingerprint(method: str, preference: np.ndarray, prompts: Sequence[str], scorers: Sequence[Scorer],
                 settings: dict) -> str:
    """A hash of everything a cached sweep point depends on (the judges included); its first 16 digits name
    the cache file."""
    blob = json.dumps({"method": method, "preference": [round(float(p), 6) for p in preference],
                       "prompts": list(prompts), "judges": [s.fingerprint() for s in scorers], "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_cached(path: Path, fingerprint: str, prompts: Sequence[str], names: Sequence[str]) -> list[dict] | None:
    """The cached records when the file is whole and was written for exactly these prompts and settings;
    ``None`` (regenerate) otherwise. Lines are split on ``\\n`` only: a response may hold U+2028."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line]
        header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    except (OSError, ValueError, IndexError):
        return None
    whole = (isinstance(header, dict) and header.get("fingerprint") == fingerprint and len(records) == len(prompts)
             and all(r.get("prompt") == p and set(names) <= set(r.get("scores", {})) for r, p in zip(records, prompts)))
    return records if whole else None


def sweep(
    method: str,
    generate: Generate,
    preferences: np.ndarray,
    prompts: Sequence[str],
    scorers: Sequence[Scorer],
    cache_dir: str | Path,
    *,
    settings: dict | None = None,
) -> list[FrontPoint]:
    """Evaluate ``method`` at every row of ``preferences`` (shape ``(M, K)``) on ``prompts``.

    ``settings`` (generation length, temperature, seed, model path, ...) is part of the cache key: change
    any of them and the cached generations are not reused.
    """
    names = [s.name for s in scorers]
    prefs = np.asarray(preferences, dtype=np.float64)
    if prefs.ndim != 2 or prefs.shape[1] != len(names):
        raise ValueError(f"preferences must have shape (M, {len(names)}) for objectives {names}, got {prefs.shape}")
    prompts = list(prompts)
    points = []
    for preference in prefs:
        fingerprint = _fingerprint(method, preference, prompts, scorers, settings or {})
        path = Path(cache_dir) / method / f"{fingerprint[:16]}.jsonl"
        records = _read_cached(path, fingerprint, prompts, names) if path.exists() else None
        if records is None:
            if path.exists():
                logger.warning("%s does not match its prompts or settings (or is incomplete); regenerating", path)
            responses = generate(preference, prompts)
            if len(responses) != len(prompts):
                raise ValueError(f"method {method!r} returned {len(responses)} responses for {len(prompts)} prompts")
            rewards = {s.name: s.reward(prompts, responses) for s in scorers}
            records = [
                {"prompt": p, "response": r, "scores": {n: float(rewards[n][i]) for n in names}}
                for i, (p, r) in enumerate(zip(prompts, responses))
            ]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            header = json.dumps({"fingerprint": fingerprint, "prompts": len(prompts)})
            tmp.write_text(header + "\n" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                           encoding="utf-8")
            os.replace(tmp, path)
        per_prompt = np.array([[r["scores"][n] for n in names] for r in records], dtype=np.float64)
        points.append(FrontPoint(method, preference.tolist(), per_prompt))
    return points
