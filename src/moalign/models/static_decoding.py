"""A decoding step over a preallocated KV cache, optionally captured once as a CUDA graph and replayed per token.

A small model decoding a small batch on a GPU is bound by launches, not arithmetic: each token runs hundreds of
small kernels, each launched from Python (HoE adds a few per linear layer, so there its cost shows most). With a
static cache every step after the prompt has the same shapes and reads and writes the same buffers, so the step
can be recorded once as a CUDA graph and replayed: one launch per token, whatever the model does inside.

:func:`static_model_step` is a drop-in :data:`~moalign.models.decoding.Step` for
:func:`~moalign.models.decoding.decode` and computes what :func:`~moalign.models.decoding.model_step` computes
(tests: the same tokens, HoE with routers included). Sampling stays in the decoding loop, outside the graph, so
each row keeps its own generator.
"""

from __future__ import annotations

from typing import Any

import torch

from moalign.errors import MoalignError
from moalign.models.decoding import Step, forward_with_cache, model_step

DECODING_MODES = ("dynamic", "static", "cuda_graph")
"""How a decoding step runs: ``dynamic`` (a cache that grows each step, :func:`model_step`), ``static`` (a
preallocated cache, :func:`static_model_step`) or ``cuda_graph`` (the static step replayed as a CUDA graph)."""


class DecodingError(MoalignError, ValueError):
    """A decoding mode that is unknown or cannot run where the model is."""


def static_cache(config: Any, max_length: int) -> Any:
    """A transformers ``StaticCache`` of ``max_length`` positions that tracks its own write position on the device
    (what a replayed graph needs: no position passed in from the host)."""
    import transformers
    from transformers import StaticCache

    cache = StaticCache(config=config, max_cache_len=max_length)
    if not all(hasattr(layer, "cumulative_length") for layer in getattr(cache, "layers", [None])):
        raise DecodingError(f"static decoding needs a transformers whose StaticCache keeps its write position on the "
                            f"device (5.17 to 5.25 do, 5.0 does not); this is transformers {transformers.__version__}: "
                            "use decoding 'dynamic'")
    return cache


class _StaticStep:
    """The buffers of one decode: the cache, the full-length attention mask, and the step's inputs and output."""

    def __init__(self, model: torch.nn.Module, config: Any, max_new_tokens: int, cuda_graph: bool,
                 forward_kwargs: dict[str, Any]):
        self.model, self.config, self.max_new_tokens = model, config, max_new_tokens
        self.cuda_graph, self.forward_kwargs = cuda_graph, forward_kwargs
        self.graph: torch.cuda.CUDAGraph | None = None

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        output, _ = forward_with_cache(self.model, self.cache, input_ids=input_ids, attention_mask=self.mask,
                                       position_ids=position_ids, **self.forward_kwargs)
        return output.logits[:, -1]

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        batch, prompt_length = input_ids.shape
        self.length = prompt_length + self.max_new_tokens
        self.cache = static_cache(self.config, self.length)
        # the mask spans the whole cache: positions not yet written are zero (and later than every query anyway)
        self.mask = attention_mask.new_zeros((batch, self.length))
        self.mask[:, :prompt_length] = attention_mask
        self.ids = input_ids.new_zeros((batch, 1))
        self.positions = position_ids.new_zeros((batch, 1))
        return self.forward(input_ids, position_ids)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 cache: Any) -> tuple[torch.Tensor, Any]:
        if cache is None:
            return self.prefill(input_ids, attention_mask, position_ids), self
        if input_ids.shape != self.ids.shape:
            raise ValueError(f"a static decoding step takes one new token per row ({tuple(self.ids.shape)}), "
                             f"got {tuple(input_ids.shape)}")
        if attention_mask.shape[1] > self.length:
            raise ValueError(f"decoding past the static cache's {self.length} positions (prompt + "
                             f"max_new_tokens={self.max_new_tokens}); make the step with a larger max_new_tokens")
        self.ids.copy_(input_ids)
        self.positions.copy_(position_ids)
        self.mask[:, :attention_mask.shape[1]] = attention_mask
        if not self.cuda_graph:
            return self.forward(self.ids, self.positions), self
        if self.graph is None:
            return self.capture(), self
        self.graph.replay()
        return self.graph_logits.clone(), self  # the next replay overwrites the graph's output

    def capture(self) -> torch.Tensor:
        """Run this step eagerly on a side stream (the warm-up a capture needs, and this token's result), then
        record the same step as a graph; recording runs nothing, so the cache advances once."""
        device = self.ids.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            logits = self.forward(self.ids, self.positions)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # under autocast, record the casts of the weights too: a cast cached by the autocast region may be freed
        # before a later replay reads it. thread_local: other threads of a server may use CUDA meanwhile
        autocast = torch.is_autocast_enabled("cuda")
        with torch.autocast("cuda", enabled=autocast, dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False), \
                torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.graph_logits = self.forward(self.ids, self.positions)
        self.graph = graph
        return logits


def check_decoding(decoding: str, device: torch.device | str) -> None:
    """Raise :class:`DecodingError` for a decoding mode that is unknown or cannot run on ``device``."""
    if decoding not in DECODING_MODES:
        raise DecodingError(f"unknown decoding {decoding!r}; choose from {', '.join(DECODING_MODES)}")
    if decoding == "cuda_graph" and (torch.device(device).type != "cuda" or not torch.cuda.is_available()):
        raise DecodingError(f"CUDA graphs need the model on a CUDA device; it is on {device}: use decoding "
                            "'static' or 'dynamic'")


def model_config(model: torch.nn.Module) -> Any:
    """The transformers config of a causal LM, of a PEFT model around one, or of the causal LM a wrapper holds as
    ``base`` (:class:`~moalign.hoe.HoEModel`)."""
    from transformers import PretrainedConfig

    for candidate in (model, getattr(model, "base", None)):
        config = getattr(candidate, "config", None)
        if isinstance(config, PretrainedConfig):
            return config
    raise TypeError(f"static decoding lays its cache out by a transformers config; {type(model).__name__} has none "
                    "(nor a 'base' model with one): pass config=")


def static_model_step(model: torch.nn.Module, max_new_tokens: int, *, cuda_graph: bool = False,
                      config: Any = None, **forward_kwargs: Any) -> Step:
    """A :data:`~moalign.models.decoding.Step` like :func:`~moalign.models.decoding.model_step`, over a static cache
    sized on its first call (the prompt) to hold ``max_new_tokens`` more; with ``cuda_graph`` (a CUDA model), the
    steps after the prompt are captured once and replayed.

    ``config`` is the transformers config the cache is laid out by (default: :func:`model_config`). One step
    object serves one decode.
    """
    config = config if config is not None else model_config(model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if cuda_graph:
        check_decoding("cuda_graph", next(model.parameters()).device)
    return _StaticStep(model, config, max_new_tokens, cuda_graph, forward_kwargs)


def decoding_step(model: torch.nn.Module, decoding: str, max_new_tokens: int, *, config: Any = None,
                  **forward_kwargs: Any) -> Step:
    """The step of one decode of at most ``max_new_tokens`` tokens, run as ``decoding`` says (:data:`DECODING_MODES`);
    ``config`` and ``forward_kwargs`` as in :func:`static_model_step`."""
    check_decoding(decoding, next(model.parameters()).device)
    if decoding == "dynamic":
        return model_step(model, **forward_kwargs)
    return static_model_step(model, max_new_tokens, cuda_graph=decoding == "cuda_graph", config=config,
                             **forward_kwargs)
