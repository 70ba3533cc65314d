"""Exact weighted mixtures of LoRA experts, unmerged: ``W x + sum_k w_k * s_k * B_k A_k x``.

All experts are loaded as adapters of one PEFT model and activated together; each adapter's LoRA
``scaling`` is multiplied by its weight. Unlike PEFT's ``add_weighted_adapter(..., "linear")`` (which
mixes A and B separately and adds cross terms), this is the exact interpolation of the experts'
weight deltas, i.e. rewarded soups over LoRA experts, and changing the weights copies no tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class LoraMixture:
    """A base model with K LoRA experts whose contributions are weighted by a preference vector.

    Args:
        base: the base model the experts were trained from.
        adapter_dirs: one PEFT adapter directory per expert, in objective order.
        names: adapter names (default ``expert0``, ``expert1``, ...).
    """

    def __init__(self, base: torch.nn.Module, adapter_dirs: Sequence[str | Path], names: Sequence[str] | None = None):
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        if not adapter_dirs:
            raise ValueError("a mixture needs at least one adapter")
        self.names = list(names) if names is not None else [f"expert{k}" for k in range(len(adapter_dirs))]
        if len(self.names) != len(adapter_dirs):
            raise ValueError(f"{len(self.names)} names for {len(adapter_dirs)} adapters")
        model = PeftModel.from_pretrained(base, str(adapter_dirs[0]), adapter_name=self.names[0])
        for name, path in zip(self.names[1:], adapter_dirs[1:]):
            model.load_adapter(str(path), adapter_name=name)
        model.base_model.set_adapter(self.names)  # PeftModel.set_adapter does not take a list
        self.model = model.eval()
        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        self._scaling = [{n: layer.scaling[n] for n in self.names} for layer in self.layers]

    def set_weights(self, weights: Sequence[float] | np.ndarray) -> None:
        """Weight expert k by ``weights[k]`` (e.g. a normalised preference vector)."""
        weights = [float(w) for w in weights]
        if len(weights) != len(self.names):
            raise ValueError(f"{len(weights)} weights for {len(self.names)} experts")
        for layer, original in zip(self.layers, self._scaling):
            for name, w in zip(self.names, weights):
                layer.scaling[name] = original[name] * w
