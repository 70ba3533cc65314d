"""HoEModel: a base causal LM whose linear layers carry every LoRA expert, steered per row by a preference.

Preference routing (level 3) turns each row's λ into weights over anchors; an anchor is one expert used alone
or a router expert (level 2) that mixes its candidate experts per token; the mixture layers (level 1) apply
the resulting per-row expert weights in one forward. Nothing is merged or mutated per request.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from moalign.hoe.config import WEIGHTS_NAME, AnchorConfig, ExpertConfig, HoEConfig, HoEError
from moalign.hoe.experts import Expert, linear_modules, linear_weight
from moalign.models.decoding import default_top_k, eos_ids, generate_texts
from moalign.models.static_decoding import check_decoding, decoding_step
from moalign.hoe.layer import MixingWeights, MixtureLoraLinear, RouterExpert, mixing, route_block
from moalign.hoe.routing import nearest_experts, route_preference, route_preferences
from moalign.preference import normalize_preference

Preferences = Sequence[float] | Mapping[str, float] | np.ndarray | Sequence[Sequence[float] | Mapping[str, float]]


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The module list of transformer blocks (``model.layers``, ``transformer.h``, ...): the largest ModuleList."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise HoEError("the base model has no list of transformer blocks")
    return max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))


class HoEModel(nn.Module):
    """One base model serving any preference: ``model(input_ids, preference=...)`` and ``model.generate(...)``.

    Build with :meth:`from_experts`, save with :meth:`save_pretrained`, load with :meth:`from_pretrained`.
    """

    def __init__(self, base: nn.Module, config: HoEConfig, factors: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
                 tokenizer: Any = None):
        super().__init__()
        self.config = config
        self.base = base.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        blocks_name, blocks = transformer_blocks(base)
        self.config.blocks = blocks_name
        self._num_blocks = len(blocks)
        linear = linear_modules(base)
        self.mixture_layers: dict[str, MixtureLoraLinear] = {}
        for module, module_factors in factors.items():
            prefix = f"{blocks_name}."
            block = int(module[len(prefix):].split(".")[0]) if module.startswith(prefix) else -1
            layer = MixtureLoraLinear(linear[module], module_factors, block)
            base.set_submodule(module, layer)
            self.mixture_layers[module] = layer
        self._routing_hooks: list[Any] = []
        self.routers = nn.ModuleDict()
        hidden = base.config.get_text_config().hidden_size
        for index, anchor in enumerate(config.anchors):
            if anchor.has_router:
                self._set_router(index, self._new_router(hidden, anchor))
        self._anchor_points = np.array([a.preference for a in config.anchors], dtype=np.float64)
        self._fixed_mix = torch.zeros(len(config.anchors), len(config.experts))
        for index, anchor in enumerate(config.anchors):
            if not anchor.has_router:
                self._fixed_mix[index, anchor.expert] = 1.0

    # ----------------------------------------------------------------- building
    @classmethod
    def from_experts(cls, base: nn.Module, experts: Sequence[Expert], objectives: Sequence[str], *,
                     base_model: str | None = None, tokenizer: Any = None, n_nearest: int | None = None) -> HoEModel:
        """Attach ``experts`` to ``base``; each expert is an anchor at its preference (add routers afterwards)."""
        if not experts:
            raise HoEError("a HoE model needs at least one expert")
        objectives = list(objectives)
        for expert in experts:
            if len(expert.preference) != len(objectives):
                raise HoEError(f"expert {expert.name!r} has a preference over {len(expert.preference)} objectives, "
                               f"the model has {len(objectives)} {objectives}")
        cls._check_fits(base, experts, base_model)
        from moalign.models import portable_model_name, resolve_model_path

        name = base_model or getattr(base.config, "_name_or_path", "")
        local = Path(resolve_model_path(name)) if name else None
        modules = sorted({m for e in experts for m in e.factors})
        factors = {}
        for module in modules:
            weight = linear_weight(linear_modules(base)[module])
            empty = (weight.new_zeros((0, weight.shape[1])), weight.new_zeros((weight.shape[0], 0)))
            factors[module] = [e.factors.get(module, empty) for e in experts]
        config = HoEConfig(
            base_model=portable_model_name(name),
            base_model_local=str(local.resolve()) if local is not None and local.exists() else None,
            objectives=objectives,
            experts=[ExpertConfig(e.name, [float(x) for x in normalize_preference(e.preference, objectives)],
                                  e.ranks()) for e in experts],
            anchors=[AnchorConfig(list(normalize_preference(e.preference, objectives)), expert=i)
                     for i, e in enumerate(experts)],
            n_nearest=n_nearest,
        )
        return cls(base, config, factors, tokenizer)

    @staticmethod
    def _check_fits(base: nn.Module, experts: Sequence[Expert], base_model: str | None) -> None:
        linear = linear_modules(base)
        for expert in experts:
            for module, (a, b) in expert.factors.items():
                if module not in linear:
                    raise HoEError(f"expert {expert.name!r} adapts {module!r}, which the base model {base_model or ''} "
                                   "does not have (was it trained on another base model?)")
                d_out, d_in = linear_weight(linear[module]).shape
                if a.shape[1] != d_in or b.shape[0] != d_out or a.shape[0] != b.shape[1]:
                    raise HoEError(f"expert {expert.name!r}: module {module!r} has factors A {tuple(a.shape)}, B "
                                   f"{tuple(b.shape)}, which do not fit the base layer ({d_out} x {d_in})")

    def _new_router(self, hidden: int, anchor: AnchorConfig) -> RouterExpert:
        points = np.array([self.config.experts[j].preference for j in anchor.candidates])
        start = route_preference(np.asarray(anchor.preference), points, len(anchor.candidates))
        logits = np.log(0.9 * start + 0.1 / len(start))
        device = next(self.base.parameters()).device
        return RouterExpert(hidden, self._num_blocks, anchor.candidates, len(self.config.experts), logits).to(device)

    def add_router(self, preference: Sequence[float] | Mapping[str, float], num_candidates: int | None = None) -> int:
        """Add a router expert at anchor ``preference`` over its ``num_candidates`` nearest experts (default: as many
        as objectives), replacing an expert anchor at the same point; returns its anchor index."""
        point = normalize_preference(preference, self.config.objectives)
        experts = np.array([e.preference for e in self.config.experts])
        candidates = nearest_experts(point, experts, num_candidates or len(self.config.objectives))
        anchor = AnchorConfig([float(x) for x in point], candidates=candidates)
        same = [i for i, a in enumerate(self.config.anchors) if np.allclose(a.preference, point)]
        index = same[0] if same else len(self.config.anchors)
        if same:
            self.config.anchors[index] = anchor
        else:
            self.config.anchors.append(anchor)
            self._anchor_points = np.vstack([self._anchor_points, point])
            self._fixed_mix = torch.cat([self._fixed_mix, torch.zeros(1, len(self.config.experts))])
        self._fixed_mix[index] = 0.0
        hidden = self.base.config.get_text_config().hidden_size
        self._set_router(index, self._new_router(hidden, anchor))
        return index

    def _set_router(self, index: int, router: RouterExpert) -> None:
        """Make ``router`` anchor ``index``'s, hooking routing into the blocks with the first router (a model
        without routers runs its blocks unhooked)."""
        self.routers[str(index)] = router
        if not self._routing_hooks:
            self._routing_hooks = [block.register_forward_pre_hook(functools.partial(route_block, i), with_kwargs=True)
                                   for i, block in enumerate(self.base.get_submodule(self.config.blocks))]

    # ----------------------------------------------------------------- routing
    @property
    def objectives(self) -> list[str]:
        return self.config.objectives

    def preference_matrix(self, preference: Preferences | None, batch: int) -> np.ndarray:
        """``(batch, K)`` validated preferences: one for all rows, one per row, or the default (uniform)."""
        if preference is None:
            return np.full((batch, len(self.objectives)), 1.0 / len(self.objectives))
        rows = preference
        per_row = (isinstance(preference, np.ndarray) and preference.ndim == 2) or (
            isinstance(preference, Sequence) and not isinstance(preference, str) and len(preference) > 0
            and all(isinstance(p, (Sequence, Mapping, np.ndarray)) and not isinstance(p, str) for p in preference))
        if not per_row:
            return np.tile(normalize_preference(preference, self.objectives), (batch, 1))
        rows = [normalize_preference(p, self.objectives) for p in rows]
        if len(rows) != batch:
            raise HoEError(f"{len(rows)} preferences for {batch} rows")
        return np.stack(rows)

    def mixing_weights(self, preference: Preferences | None = None, *, batch: int = 1,
                       expert_weights: torch.Tensor | np.ndarray | None = None) -> MixingWeights:
        """The expert weights of a call: from preferences through the anchors, or ``expert_weights`` ``(B, E)``
        given directly (rewarded soups, MOD's one-hot passes)."""
        device = next(self.base.parameters()).device
        if expert_weights is not None:
            fixed = torch.as_tensor(expert_weights, dtype=torch.float32)
            fixed = fixed.expand(batch, -1) if fixed.dim() == 1 else fixed
            if fixed.shape != (batch, len(self.config.experts)):
                raise HoEError(f"expert weights of shape {tuple(fixed.shape)}; expected ({batch}, {len(self.config.experts)})")
            return MixingWeights(fixed.to(device))
        anchor_weights = torch.as_tensor(
            route_preferences(self.preference_matrix(preference, batch), self._anchor_points, self.config.n_nearest),
            dtype=torch.float32)
        fixed = anchor_weights @ self._fixed_mix
        router_columns = [int(k) for k in self.routers]
        if not router_columns:
            return MixingWeights(fixed.to(device))
        return MixingWeights(fixed.to(device), anchor_weights[:, router_columns].to(device), list(self.routers.values()))

    # ----------------------------------------------------------------- forward and generation
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                preference: Preferences | None = None, expert_weights: torch.Tensor | None = None,
                mixing_weights: MixingWeights | None = None, **kwargs: Any):
        """The base model's forward with every row mixed at its own preference (or given expert weights)."""
        batch = (input_ids if input_ids is not None else kwargs["inputs_embeds"]).shape[0]
        if mixing_weights is None:
            mixing_weights = self.mixing_weights(preference, batch=batch, expert_weights=expert_weights)
        fresh = MixingWeights(mixing_weights.fixed, mixing_weights.router_weights, mixing_weights.routers,
                              fixed_per_rank=mixing_weights.fixed_per_rank)
        with mixing(fresh):
            return self.base(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str | list[dict[str, str]]], preference: Preferences | None = None, *,
                 tokenizer: Any = None, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None, batch_size: int = 16,
                 expert_weights: torch.Tensor | np.ndarray | None = None, progress: bool = False,
                 desc: str = "generating", decoding: str = "dynamic") -> list[str]:
        """One response per prompt, each at its own preference (one for all, or one per prompt), or with
        ``expert_weights`` given directly.

        Sampling is per row with its own generator (``seeds[i]``, default ``seed + i``), so an answer depends only
        on its prompt, preference and seed; greedy when ``temperature`` is 0. ``top_k`` defaults to the base
        model's generation config, as in transformers' ``generate``. ``decoding`` is one of
        :data:`~moalign.models.static_decoding.DECODING_MODES` (``cuda_graph``: fastest for small batches on a GPU).
        """
        prompts = list(prompts)
        preferences = self.preference_matrix(preference, len(prompts))
        check_decoding(decoding, next(self.base.parameters()).device)

        def make_step(rows: slice):
            batch = len(prompts[rows])
            weights = (self.mixing_weights(batch=batch, expert_weights=expert_weights) if expert_weights is not None
                       else self.mixing_weights(preferences[rows], batch=batch))
            return decoding_step(self, decoding, max_new_tokens, mixing_weights=weights)

        return self.decode_prompts(make_step, prompts, tokenizer=tokenizer, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, seeds=seeds,
                                   batch_size=batch_size, progress=progress, desc=desc)

    def decode_prompts(self, make_step, prompts: list, *, tokenizer: Any, seed: int, seeds: Sequence[int] | None,
                       top_k: int | None = None, **settings: Any) -> list[str]:
        """:func:`~moalign.models.decoding.generate_texts` with this model's tokenizer, device and stop tokens."""
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise HoEError("no tokenizer: pass tokenizer= or load the model with one")
        seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
        if len(seeds) != len(prompts):
            raise HoEError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        return generate_texts(make_step, tokenizer, prompts, device=next(self.base.parameters()).device,
                              eos_token_ids=eos_ids(self.base, tokenizer), seeds=seeds,
                              top_k=default_top_k(self.base) if top_k is None else top_k, **settings)

    # ----------------------------------------------------------------- saving
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything HoE adds to the base model: stacked expert factors and router weights."""
        tensors = {}
        for module, layer in self.mixture_layers.items():
            tensors[f"{module}.lora_A"] = layer.lora_A.detach()
            tensors[f"{module}.lora_B"] = layer.lora_B.detach()
        for key, value in self.routers.state_dict().items():
            tensors[f"routers.{key}"] = value.detach()
        return {k: v.contiguous().cpu() for k, v in tensors.items()}

    def save_pretrained(self, directory: str | Path) -> None:
        """``hoe_config.json`` + ``hoe_model.safetensors`` (+ the tokenizer); the base model is referenced by name."""
        from safetensors.torch import save_file

        from moalign.models import portable_model_name

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_tensors(), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        config = HoEConfig(**{**self.config.to_dict(), "base_model": portable_model_name(self.config.base_model),
                              "experts": self.config.experts, "anchors": self.config.anchors})
        config.save(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, base: nn.Module | str | None = None, dtype: str = "auto",
                        device: str | None = None) -> HoEModel:
        """Load a saved HoE model onto ``base`` (a model, a name or path; default: the manifest's local copy when
        this machine has it, else its name)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from moalign.models import load_model, load_tokenizer

        directory = Path(directory)
        config = HoEConfig.load(directory)
        try:
            tensors = load_file(str(directory / WEIGHTS_NAME))
        except (SafetensorError, FileNotFoundError, OSError) as error:
            raise HoEError(f"{directory / WEIGHTS_NAME}: cannot be read ({error})") from None
        recorded = config.base_model_local if config.base_model_local and Path(config.base_model_local).exists() \
            else config.base_model
        base_model = base if isinstance(base, nn.Module) else load_model(base or recorded, dtype=dtype, device=device)
        has_tokenizer = (directory / "tokenizer_config.json").exists()
        tokenizer = load_tokenizer(directory if has_tokenizer else (base if isinstance(base, str) else recorded))
        modules = sorted({k.rsplit(".", 1)[0] for k in tensors if not k.startswith("routers.")})
        experts = []
        for index, info in enumerate(config.experts):
            factors = {}
            for module in modules:
                a_all, b_all = tensors.get(f"{module}.lora_A"), tensors.get(f"{module}.lora_B")
                if a_all is None or b_all is None:
                    raise HoEError(f"{directory / WEIGHTS_NAME}: {module} lacks lora_A or lora_B")
                ranks = [e.ranks.get(module, 0) for e in config.experts]
                if sum(ranks) != a_all.shape[0]:
                    raise HoEError(f"{directory}: {module} holds {a_all.shape[0]} ranks, the manifest says {sum(ranks)}")
                start = sum(ranks[:index])
                if ranks[index]:
                    factors[module] = (a_all[start:start + ranks[index]], b_all[:, start:start + ranks[index]])
            experts.append(Expert(info.name, info.preference, factors))
        cls._check_fits(base_model, experts, config.base_model)
        factors = {}
        for module in modules:
            w = linear_weight(linear_modules(base_model)[module])
            empty = (w.new_zeros((0, w.shape[1])), w.new_zeros((w.shape[0], 0)))
            factors[module] = [e.factors.get(module, empty) for e in experts]
        model = cls(base_model, config, factors, tokenizer)
        router_state = {k[len("routers."):]: v for k, v in tensors.items() if k.startswith("routers.")}
        missing, unexpected = model.routers.load_state_dict(router_state, strict=False)
        if missing or unexpected:
            raise HoEError(f"{directory}: router weights do not match the manifest (missing {missing}, unexpected {unexpected})")
        return model

    def export_lora(self, preference: Sequence[float] | Mapping[str, float], directory: str | Path) -> Path:
        """Save the model at one preference as a plain PEFT LoRA adapter (exact: the experts' factors side by side,
        ``B`` scaled by each expert's weight). Needs routing that does not depend on the input (no router used)."""
        from safetensors.torch import save_file

        from moalign.models import portable_model_name

        weights = self.mixing_weights(preference, batch=1)
        if weights.router_weights is not None and float(weights.router_weights.abs().sum()) > 0:
            raise HoEError("this preference is routed through a router expert, whose weights depend on the input; "
                           "a single LoRA cannot express it")
        expert_w = weights.fixed[0].cpu()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors, ranks = {}, {}
        for module, layer in self.mixture_layers.items():
            keep = expert_w.index_select(0, layer.expert_of_rank.cpu()) != 0
            if not bool(keep.any()):
                continue
            a = layer.lora_A.detach().cpu()[keep]
            b = (layer.lora_B.detach().cpu() * expert_w.index_select(0, layer.expert_of_rank.cpu()).to(layer.lora_B.dtype))[:, keep]
            tensors[f"base_model.model.{module}.lora_A.weight"] = a.contiguous()
            tensors[f"base_model.model.{module}.lora_B.weight"] = b.contiguous()
            ranks[module] = int(a.shape[0])
        if not ranks:
            raise HoEError("no expert has weight at this preference")
        r = max(ranks.values())
        config = {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": portable_model_name(self.config.base_model),
            "r": r, "lora_alpha": r, "lora_dropout": 0.0, "bias": "none", "target_modules": sorted(ranks),
            "rank_pattern": {re.escape(m): k for m, k in ranks.items()},
            "alpha_pattern": {re.escape(m): k for m, k in ranks.items()},
            "fan_in_fan_out": any(type(layer.base_layer).__name__ == "Conv1D" for layer in self.mixture_layers.values()),
            "inference_mode": True,
        }
        (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
        return directory

