"""Methods to evaluate, from short specs: the base model, one trained model, a set of per-preference
models, or a rewarded soup of per-objective LoRA experts.

A spec is ``[NAME=]KIND``, where KIND is

* ``base``: the base model, one point;
* ``PATH``: one trained model (a PEFT adapter or a full ``save_pretrained`` model; a training output
  folder holding ``final/`` works too), one point at the preference it was trained with (linear rules)
  or, for rules that take none, at the uniform preference;
* ``models:PATH+PATH+...``: one model per preference (e.g. linear scalarisation over a grid), each a point
  at the preference recorded in its ``moalign_training.json``;
* ``soup:PATH+PATH+...``: rewarded soups, the exact weighted sum of K LoRA experts' updates (a HoE model
  with the experts alone), swept over the preference grid. Experts trained with a one-hot preference are
  matched to their objective; others are taken in objective order;
* ``mod:PATH+PATH+...``: the same experts mixed at decoding time (MOD, K forward passes per token);
* ``hoe:DIR``: a HoE model (``moalign hoe build``), swept over the grid.

Models load lazily, so a rerun served entirely from the sweep cache loads nothing. Prefixed kinds live in a
registry (:func:`register_method_kind`); a model already in memory becomes a method with :func:`model_method`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import MoalignError
from moalign.eval.sweep import FrontPoint, Generate, sweep
from moalign.objectives import Scorer

TRAINING_SUMMARY = "moalign_training.json"
_WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "hoe_model.safetensors",
                 "hoe_config.json")


class MethodError(MoalignError, ValueError):
    """A method spec that cannot be evaluated (unknown kind, missing folder, objectives that do not match)."""


@dataclass
class GenerationSettings:
    """How every method answers: the same settings for all, and part of the sweep cache key."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    batch_size: int = 8
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "batch_size": self.batch_size, "seed": self.seed}


@dataclass
class Method:
    """A named way to answer prompts at a preference, and the preferences to sweep it at."""

    name: str
    generate: Generate
    preferences: np.ndarray
    fingerprint: dict[str, Any] = field(default_factory=dict)


def parse_method_specs(text: str) -> list[tuple[str, str]]:
    """``"a=soup:x+y,b=path,base"`` → ``[("a", "soup:x+y"), ("b", "path"), ("base", "base")]``."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, kind = part.partition("=")
        if not sep:
            name, kind = _default_name(part), part
        if not name or not kind:
            raise MethodError(f"bad method spec {part!r}; use NAME=KIND or KIND")
        specs.append((name, kind))
    if not specs:
        raise MethodError("no methods given")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise MethodError(f"method names must be unique, got {names}; name them with NAME=KIND")
    return specs


def _default_name(kind: str) -> str:
    if kind == "base":
        return "base"
    prefix, _, rest = kind.partition(":")
    if prefix in METHOD_KINDS and rest:
        return prefix
    path = Path(kind)
    return path.parent.name if path.name == "final" else path.name


def resolve_model_dir(path: str | Path) -> Path:
    """The folder holding the weights: ``path`` itself, or ``path/final`` for a training output folder."""
    path = Path(path)
    for candidate in (path, path / "final"):
        if any((candidate / f).exists() for f in ("adapter_config.json", "config.json", "hoe_config.json")):
            return candidate
    if not path.exists():
        raise MethodError(f"{path}: no such folder")
    raise MethodError(f"{path}: neither a PEFT adapter (adapter_config.json), a model (config.json) nor a HoE model "
                      "(hoe_config.json)")


def training_summary(model_dir: Path) -> dict[str, Any]:
    """The ``moalign_training.json`` written next to a trained model, or ``{}``."""
    path = model_dir / TRAINING_SUMMARY
    return json.loads(path.read_text()) if path.exists() else {}


def trained_preference(model_dir: Path, objectives: Sequence[str]) -> np.ndarray | None:
    """The preference a model was trained with, reordered to ``objectives``; None when it recorded none or was
    trained on other objectives than the ones it is judged on (e.g. HH-RLHF's helpful/harmless, judged by scorers)."""
    summary = training_summary(model_dir)
    preference = summary.get("config", {}).get("preference")
    trained_on = summary.get("objectives") or list(objectives)
    if preference is None or sorted(trained_on) != sorted(objectives):
        return None
    weights = np.asarray(preference, dtype=np.float64)
    weights = weights / weights.sum()
    return np.array([weights[trained_on.index(o)] for o in objectives])


def recorded_base_model(model_dir: Path) -> str | None:
    """The base model an adapter folder records, or None: the local copy it was trained on when this machine
    still has it (``moalign_training.json``), else its portable name (``base_model_name_or_path``)."""
    summary = model_dir / "moalign_training.json"
    local = json.loads(summary.read_text()).get("base_model_local") if summary.exists() else None
    if local and Path(local).exists():
        return local
    config = model_dir / "adapter_config.json"
    return json.loads(config.read_text()).get("base_model_name_or_path") or None if config.exists() else None


def _fingerprint(model_dir: Path) -> list[Any]:
    """Identifies a model's weights for the cache: its path and the size and mtime of its weight files."""
    stats = [(f, (model_dir / f).stat().st_size, (model_dir / f).stat().st_mtime_ns)
             for f in _WEIGHT_FILES if (model_dir / f).exists()]
    return [str(model_dir.resolve()), stats]


class _Loader:
    """Loads the base model and tokenizer once, on first use."""

    def __init__(self, base_model: str | None, settings: GenerationSettings):
        self.base_model, self.settings = base_model, settings
        self._tokenizer = None

    def base_for(self, model_dir: Path | None) -> str:
        base = self.base_model or (recorded_base_model(model_dir) if model_dir is not None else None)
        if base is None:
            raise MethodError("cannot tell the base model; pass it (--model)")
        return base

    def tokenizer(self, base: str):
        from moalign.models import load_tokenizer

        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(base)
        return self._tokenizer

    def load(self, model_dir: Path | None):
        """The base model (``model_dir`` None), a full model, or the base with the adapter attached."""
        from moalign.models import load_model

        if model_dir is None or (model_dir / "adapter_config.json").exists():
            base = self.base_for(model_dir)
            model = load_model(base)
            if model_dir is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(model_dir))
            return model.eval(), self.tokenizer(base)
        return load_model(model_dir).eval(), self.tokenizer(self.base_model or str(model_dir))

    def lazy_generate(self, model_dir: Path | None, desc: str) -> Generate:
        """Answers with one model (the base when ``model_dir`` is None), loaded on the first call."""
        state: dict[str, Any] = {}

        def generate(preference: np.ndarray, prompts: list[str]) -> list[str]:
            if "model" not in state:
                state["model"], state["tokenizer"] = self.load(model_dir)
            return self.answer(state["model"], state["tokenizer"], prompts, desc)

        return generate

    def answer(self, model, tokenizer, prompts: list[str], desc: str) -> list[str]:
        from moalign.models import generate_responses

        s = self.settings
        return generate_responses(model, tokenizer, prompts, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                  batch_size=s.batch_size, seed=s.seed, progress=True, desc=desc)


MethodBuilder = Callable[[str, list[Path], Sequence[str], np.ndarray, "_Loader"], Method]
"""Builds a :class:`Method` from its name, the model folders of its spec, the objectives, the preference grid
and the shared lazy loader."""

METHOD_KINDS: dict[str, MethodBuilder] = {}
"""Spec kinds of the form ``PREFIX:PATH+PATH+...`` and their builders (``soup``, ``models``; HoE adds its own)."""


def register_method_kind(prefix: str, builder: MethodBuilder) -> None:
    """Make ``PREFIX:PATH+...`` specs build through ``builder``."""
    if prefix in ("base", "") or ":" in prefix:
        raise ValueError(f"{prefix!r} cannot name a method kind")
    METHOD_KINDS[prefix] = builder


def model_method(
    name: str,
    model: Any,
    tokenizer: Any,
    objectives: Sequence[str],
    *,
    preference: Sequence[float] | None = None,
    settings: GenerationSettings | None = None,
) -> Method:
    """A :class:`Method` from a model already in memory: one point, at ``preference`` (default uniform).

    The cache fingerprint is a hash of the model's weights, so changed weights are never served from an old
    sweep.
    """
    k = len(objectives)
    point = np.full((1, k), 1.0 / k) if preference is None else np.asarray(preference, dtype=np.float64)[None, :] / sum(preference)
    if point.shape != (1, k):
        raise MethodError(f"{name}: a preference of {len(preference)} weights for {k} objectives")
    loader = _Loader(None, settings or GenerationSettings())
    digest = hashlib.sha1()
    for param_name, tensor in sorted(model.state_dict().items()):
        digest.update(param_name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())

    def generate(preference: np.ndarray, prompts: list[str]) -> list[str]:
        return loader.answer(model.eval(), tokenizer, prompts, name)

    return Method(name, generate, point, {"weights": digest.hexdigest()})


def build_method(
    name: str,
    kind: str,
    objectives: Sequence[str],
    grid: np.ndarray,
    *,
    base_model: str | None = None,
    settings: GenerationSettings | None = None,
) -> Method:
    """Turn one spec into a :class:`Method` whose models load on first use."""
    loader = _Loader(base_model, settings or GenerationSettings())
    k = len(objectives)
    uniform = np.full((1, k), 1.0 / k)
    if kind == "base":
        return Method(name, loader.lazy_generate(None, name), uniform, {"base": loader.base_for(None)})
    prefix = kind.partition(":")[0]
    dirs = spec_model_dirs(kind)
    if prefix in METHOD_KINDS:
        return METHOD_KINDS[prefix](name, dirs, objectives, grid, loader)
    model_dir = dirs[0]
    preference = trained_preference(model_dir, objectives)
    points = uniform if preference is None else preference[None, :]
    return Method(name, loader.lazy_generate(model_dir, name), points, {"model": _fingerprint(model_dir), "base": base_model})


def spec_model_dirs(kind: str) -> list[Path]:
    """The model folders a method spec names (none for ``base``); unknown kinds and missing folders are errors."""
    if kind == "base":
        return []
    prefix, _, rest = kind.partition(":")
    if prefix in METHOD_KINDS:
        paths = [resolve_model_dir(p) for p in rest.split("+") if p]
        if not paths:
            raise MethodError(f"{prefix}: needs one or more paths joined by '+', e.g. {prefix}:a/final+b/final")
        return paths
    if rest and not Path(kind).exists():
        kinds = ", ".join(f"{k}:A+B+..." for k in sorted(METHOD_KINDS))
        raise MethodError(f"unknown method kind {prefix!r} in {kind!r}; use base, a model folder, {kinds}")
    return [resolve_model_dir(kind)]


def _objective_order(experts: list[Path], objectives: Sequence[str]) -> list[Path]:
    """Experts trained with one-hot preferences, reordered to ``objectives``; others are kept in the given order."""
    one_hot = [trained_preference(p, objectives) for p in experts]
    if all(p is not None and np.isclose(p.max(), 1.0) for p in one_hot):
        owners = [int(np.argmax(p)) for p in one_hot]
        if sorted(owners) == list(range(len(objectives))):
            return [experts[owners.index(i)] for i in range(len(objectives))]
    return list(experts)


def _expert_mixture(kind: str, name: str, experts: list[Path], objectives: Sequence[str], grid: np.ndarray,
                    loader: _Loader, decode: Callable[..., list[str]]) -> Method:
    """Methods over one LoRA expert per objective held by one :class:`~moalign.hoe.HoEModel` (built on first use):
    rewarded soups (its constant-weight mixture) and MOD (decoding-time mixing)."""
    if len(experts) != len(objectives):
        raise MethodError(f"{kind}: {len(experts)} experts for {len(objectives)} objectives {list(objectives)}")
    for path in experts:
        if not (path / "adapter_config.json").exists():
            raise MethodError(f"{kind}: {path} is not a LoRA adapter; {kind} mixes LoRA experts")
    ordered = _objective_order(experts, objectives)
    state: dict[str, Any] = {}

    def generate(preference: np.ndarray, prompts: list[str]) -> list[str]:
        from moalign.hoe import HoEModel, expert_from_adapter
        from moalign.models import load_model

        if "model" not in state:
            base = loader.base_for(ordered[0])
            loaded = [expert_from_adapter(o, np.eye(len(objectives))[k], p)
                      for k, (o, p) in enumerate(zip(objectives, ordered))]
            state["model"] = HoEModel.from_experts(load_model(base), loaded, objectives, base_model=base,
                                                   tokenizer=loader.tokenizer(base))
        return decode(state["model"], prompts, preference, desc=f"{name} {np.round(preference, 2).tolist()}",
                      **_decode_settings(loader.settings))

    fingerprint = {"experts": [_fingerprint(p) for p in ordered], "base": loader.base_model, "decoder": kind}
    return Method(name, generate, grid, fingerprint)


def _decode_settings(s: GenerationSettings) -> dict[str, Any]:
    return {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "batch_size": s.batch_size,
            "seed": s.seed, "progress": True}


def _soup(name: str, experts: list[Path], objectives: Sequence[str], grid: np.ndarray, loader: _Loader) -> Method:
    return _expert_mixture("soup", name, experts, objectives, grid, loader,
                           lambda model, prompts, preference, **kw: model.generate(prompts, preference, **kw))


def _mod(name: str, experts: list[Path], objectives: Sequence[str], grid: np.ndarray, loader: _Loader) -> Method:
    from moalign.hoe.mod import mod_generate

    return _expert_mixture("mod", name, experts, objectives, grid, loader, mod_generate)


def _hoe(name: str, dirs: list[Path], objectives: Sequence[str], grid: np.ndarray, loader: _Loader) -> Method:
    from moalign.hoe import HoEConfig

    if len(dirs) != 1:
        raise MethodError(f"hoe: one HoE model folder, got {len(dirs)}")
    folder = dirs[0]
    model_objectives = HoEConfig.load(folder).objectives
    if sorted(model_objectives) != sorted(objectives):
        raise MethodError(f"hoe: {folder} serves objectives {model_objectives}, the front is over {list(objectives)}")
    state: dict[str, Any] = {}

    def generate(preference: np.ndarray, prompts: list[str]) -> list[str]:
        from moalign.hoe import HoEModel

        if "model" not in state:
            state["model"] = HoEModel.from_pretrained(folder, base=loader.base_model)
        by_name = dict(zip(objectives, preference.tolist()))
        return state["model"].generate(prompts, by_name, desc=f"{name} {np.round(preference, 2).tolist()}",
                                       **_decode_settings(loader.settings))

    return Method(name, generate, grid, {"hoe": _fingerprint(folder), "base": loader.base_model})


def _model_set(name: str, paths: list[Path], objectives: Sequence[str], loader: _Loader) -> Method:
    by_preference: dict[tuple[float, ...], tuple[Path, np.ndarray]] = {}
    for path in paths:
        preference = trained_preference(path, objectives)
        if preference is None:
            raise MethodError(f"models: {path} records no training preference over {list(objectives)}; each model of a "
                              "set must be trained with one")
        key = tuple(np.round(preference, 6))
        if key in by_preference:
            raise MethodError(f"models: {by_preference[key][0]} and {path} were both trained at preference {list(key)}")
        by_preference[key] = (path, preference)

    def generate_at(preference: np.ndarray, prompts: list[str]) -> list[str]:
        model, tokenizer = loader.load(by_preference[tuple(np.round(preference, 6))][0])
        return loader.answer(model, tokenizer, prompts, f"{name} {np.round(preference, 2).tolist()}")

    points = np.array([preference for _, preference in by_preference.values()])
    fingerprint = {"models": [_fingerprint(path) for path, _ in by_preference.values()], "base": loader.base_model}
    return Method(name, generate_at, points, fingerprint)


register_method_kind("soup", _soup)
register_method_kind("mod", _mod)
register_method_kind("hoe", _hoe)
register_method_kind("models", lambda name, dirs, objectives, grid, loader: _model_set(name, dirs, objectives, loader))


def method_cache_name(method: Method) -> str:
    """A cache folder name that changes when the method's weights change."""
    digest = hashlib.sha1(json.dumps(method.fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{method.name}-{digest}"


def sweep_methods(
    methods: Sequence[Method],
    prompts: Sequence[str],
    scorers: Sequence[Scorer],
    cache_dir: str | Path,
    settings: GenerationSettings,
) -> dict[str, list[FrontPoint]]:
    """Sweep every method at its preferences, cached per method, weights and generation settings."""
    return {m.name: sweep(method_cache_name(m), m.generate, m.preferences, prompts, scorers, cache_dir,
                          settings={**settings.to_dict(), **m.fingerprint})
            for m in methods}
