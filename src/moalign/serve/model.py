"""What the server runs: one model loaded at start, steered per row by a preference.

A HoE folder (``moalign hoe build``) is served as it is; per-objective LoRA experts given as ``objective=PATH``
become a rewarded soup (a HoE model whose only anchors are the experts, so the weights are the preference
itself); any other model or PEFT adapter is served without objectives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moalign.errors import MoalignError
from moalign.models.decoding import Step, default_top_k, eos_ids
from moalign.models.static_decoding import check_decoding, decoding_step
from moalign.models.generation import padding_id, render_prompt
from moalign.preference import PreferenceError, normalize_preference


class ServeError(MoalignError, ValueError):
    """A model the server cannot load, or settings it cannot run with."""


@dataclass
class ServedModel:
    """The model behind the server with what requests need to know about it: its objectives, its default
    preference (uniform), its tokenizer and stop tokens, and its Pareto front when an eval report came with it."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    objectives: list[str] = field(default_factory=list)
    front: dict[str, Any] | None = None
    decoding: str = "dynamic"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def steerable(self) -> bool:
        return bool(self.objectives)

    @property
    def default_preference(self) -> list[float] | None:
        return [1.0 / len(self.objectives)] * len(self.objectives) if self.objectives else None

    @property
    def eos_token_ids(self) -> list[int]:
        return eos_ids(self._causal_lm, self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        return padding_id(self.tokenizer)

    @property
    def top_k(self) -> int:
        return default_top_k(self._causal_lm)

    @property
    def context_length(self) -> int | None:
        """Most positions the model takes (prompt and answer together), when its config says."""
        config = self._causal_lm.config.get_text_config()
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    @property
    def _causal_lm(self) -> torch.nn.Module:
        model = getattr(self.model, "base", self.model)  # a HoE model's base
        return model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's

    def preference(self, value: Sequence[float] | Mapping[str, float] | None) -> np.ndarray | None:
        """A request's preference as weights over the objectives (None: the default); raises PreferenceError."""
        if value is None:
            return np.asarray(self.default_preference) if self.steerable else None
        if not self.steerable:
            raise PreferenceError(f"model {self.name!r} has no objectives to weigh; leave the preference out")
        return normalize_preference(value, self.objectives)

    def step(self, preferences: Sequence[np.ndarray | None], max_new_tokens: int) -> Step:
        """The decoding step of one batch of at most ``max_new_tokens`` new tokens, each row at its own preference,
        run as :attr:`decoding` says."""
        if not self.steerable:
            return decoding_step(self.model, self.decoding, max_new_tokens)
        weights = self.model.mixing_weights(np.stack(preferences), batch=len(preferences))
        return decoding_step(self.model, self.decoding, max_new_tokens, mixing_weights=weights)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a conversation rendered as the library renders it (chat template, assistant turn opened)."""
        return self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]

    def encode_text(self, prompt: str) -> list[int]:
        """Token ids of a raw completion prompt (no template)."""
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def describe(self) -> dict[str, Any]:
        return {"objectives": self.objectives, "default_preference": self.default_preference,
                "kind": "hoe" if self.steerable else "model", "has_front": self.front is not None}


def load_served_model(
    source: str | Path | None = None,
    *,
    experts: Sequence[tuple[str, str | Path]] | None = None,
    base_model: str | None = None,
    name: str | None = None,
    front: str | Path | None = None,
    dtype: str = "auto",
    device: str | None = None,
    decoding: str = "dynamic",
) -> ServedModel:
    """Load what ``moalign serve`` serves: a HoE folder, ``experts`` (``(objective, adapter folder)`` pairs, served
    as a rewarded soup on ``base_model`` or the first adapter's recorded base), or a single model or adapter.
    ``decoding``: how each batch decodes (:data:`~moalign.models.static_decoding.DECODING_MODES`)."""
    from moalign.hoe import HoEModel
    from moalign.hoe.build import build_hoe
    from moalign.models import load_model, load_tokenizer

    if (source is None) == (not experts):
        raise ServeError("serve either a model folder or a set of experts (objective=PATH,...), not both or neither")
    check_decoding(decoding, device or "cpu")  # before the weights load
    if experts:
        first = Path(experts[0][1])
        base = base_model or _adapter_base(first)
        model, _ = build_hoe(experts, base, anchors=[], dtype=dtype)
        model.to(device or "cpu")
        tokenizer = model.tokenizer
        label = name or "soup-" + "-".join(o for o, _ in experts)
    else:
        from moalign.eval.methods import resolve_model_dir

        path = resolve_model_dir(source) if Path(source).exists() else Path(source)  # else a Hub name
        label = name or path.resolve().name
        if (path / "hoe_config.json").exists():
            model = HoEModel.from_pretrained(path, base=base_model, dtype=dtype, device=device)
            tokenizer = model.tokenizer
        elif (path / "adapter_config.json").exists():
            from peft import PeftModel

            base = base_model or _adapter_base(path)
            model = PeftModel.from_pretrained(load_model(base, dtype=dtype, device=device), str(path))
            tokenizer = load_tokenizer(path if (path / "tokenizer_config.json").exists() else base)
        else:
            model = load_model(str(path), dtype=dtype, device=device)
            tokenizer = load_tokenizer(str(path))
    model.eval()
    objectives = list(model.objectives) if isinstance(model, HoEModel) else []
    return ServedModel(label, model, tokenizer, objectives, _read_front(front, source, objectives), decoding)


def _adapter_base(folder: Path) -> str:
    from moalign.eval.methods import recorded_base_model

    base = recorded_base_model(folder)
    if base is None:
        raise ServeError(f"{folder}: cannot tell the base model of this adapter; pass --model")
    return base


def _read_front(front: str | Path | None, source: str | Path | None, objectives: list[str]) -> dict[str, Any] | None:
    """An eval report (``moalign eval front``'s report.json) over the model's objectives: the one given, or
    ``front/report.json`` next to the model when present."""
    if front is None:
        candidate = Path(source) / "front" / "report.json" if source is not None else None
        if candidate is None or not candidate.exists():
            return None
        front = candidate
    try:
        report = json.loads(Path(front).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ServeError(f"{front}: cannot read the eval report ({error})") from None
    if not isinstance(report, dict) or "methods" not in report or "objectives" not in report:
        raise ServeError(f"{front}: not a front report (moalign eval front writes report.json)")
    if objectives and sorted(report["objectives"]) != sorted(objectives):
        raise ServeError(f"{front}: the report is over {report['objectives']}, the model over {objectives}")
    return {"objectives": report["objectives"],
            "methods": {m: [{"preference": p["preference"], "scores": p["scores"]} for p in entry["points"]]
                        for m, entry in report["methods"].items()}}
