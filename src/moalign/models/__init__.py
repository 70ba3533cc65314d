"""Models: load causal LMs by name or path, the offline default (SmolLM2) and tiny test models, LoRA."""

from moalign.models.generation import generate_responses, padding_id, render_conversation, render_prompt
from moalign.models.loading import (
    DEFAULT_MODEL_ALIASES,
    DEFAULT_MODEL_HUB_ID,
    LoraSpec,
    add_lora,
    load_model,
    load_tokenizer,
    portable_model_name,
    resolve_dtype,
    resolve_model_path,
)
from moalign.models.logprobs import sequence_logprobs, token_logprobs
from moalign.models.smollm2 import ModelPrepareError, find_default_gguf, prepare_default_model, prepare_gguf_model
from moalign.models.tiny import build_tiny_model, build_tiny_tokenizer

__all__ = [
    "DEFAULT_MODEL_ALIASES",
    "DEFAULT_MODEL_HUB_ID",
    "LoraSpec",
    "ModelPrepareError",
    "add_lora",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "find_default_gguf",
    "generate_responses",
    "load_model",
    "load_tokenizer",
    "padding_id",
    "portable_model_name",
    "prepare_default_model",
    "prepare_gguf_model",
    "render_conversation",
    "render_prompt",
    "resolve_dtype",
    "resolve_model_path",
    "sequence_logprobs",
    "token_logprobs",
]
