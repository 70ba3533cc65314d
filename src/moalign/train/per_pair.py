"""Exact per-objective gradient geometry from one backward pass, for LoRA (or any all-Linear) training.

Every objective's loss depends on the parameters only through the shared pair margins ``h_b``, so its
gradient is ``g_k = sum_b u_kb grad h_b`` with ``u_kb = dL_k/dh_b`` (cheap: K x B numbers). Pairs do not
interact inside the network, so one backward pass of ``sum_b h_b`` with hooks on the trained Linear
layers gives each pair's own gradient: for a Linear weight, ``sum_t delta_t x_t^T`` over that pair's
tokens. With ``J`` the B per-pair gradients, the Gram is ``G = U (J J^T) U^T`` and the combined update
``sum_k a_k g_k = J^T (U^T a)``: exact, at the cost of one backward whatever K is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from moalign.config import ConfigError


class PerPairGradients:
    """Hooks that turn one backward pass into per-sequence weight gradients of the trained Linear layers.

    Raises ``ValueError`` if some trainable parameter is not the weight of a bias-free ``nn.Linear``
    (true of LoRA adapters; use the autograd method otherwise).
    """

    def __init__(self, model: torch.nn.Module):
        self.modules = [
            m for m in model.modules()
            if isinstance(m, torch.nn.Linear) and m.weight.requires_grad
        ]
        covered = {id(m.weight) for m in self.modules}
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in covered:
                raise ConfigError(f"per-pair gradients need every trainable parameter to be a Linear weight; {name} is not")
        for m in self.modules:
            if m.bias is not None and m.bias.requires_grad:
                raise ConfigError("per-pair gradients do not support trainable Linear biases")
        self.params = [m.weight for m in self.modules]
        self._inputs: list[torch.Tensor | None] = [None] * len(self.modules)
        self._output_grads: list[torch.Tensor | None] = [None] * len(self.modules)

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Within this block, forward passes record each layer's input and output gradient."""
        handles = []
        for i, module in enumerate(self.modules):
            def forward_hook(mod, args, output, i=i):
                self._inputs[i] = args[0].detach()
                if output.requires_grad:
                    output.register_hook(lambda grad, i=i: self._output_grads.__setitem__(i, grad.detach()))
            handles.append(module.register_forward_hook(forward_hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def per_sequence(self) -> list[torch.Tensor]:
        """``(S, out, in)`` weight gradients per sequence, after a backward pass inside :meth:`capture`."""
        grads = []
        for x, delta, module in zip(self._inputs, self._output_grads, self.modules):
            if x is None or delta is None:
                grads.append(torch.zeros(1, *module.weight.shape, device=module.weight.device))
                continue
            x, delta = x.reshape(x.shape[0], -1, x.shape[-1]), delta.reshape(delta.shape[0], -1, delta.shape[-1])
            grads.append(torch.einsum("sto,sti->soi", delta.to(torch.float32), x.to(torch.float32)))
        self._inputs = [None] * len(self.modules)
        self._output_grads = [None] * len(self.modules)
        return grads


def per_pair_from_sequences(per_sequence: list[torch.Tensor], n_pairs: int) -> list[torch.Tensor]:
    """Sum the two sequences of each pair (layout ``[A responses, B responses]``) into ``(B, out, in)``."""
    return [g[:n_pairs] + g[n_pairs:] if g.shape[0] == 2 * n_pairs else torch.zeros(n_pairs, *g.shape[1:], device=g.device)
            for g in per_sequence]


def pair_gram(per_pair: list[torch.Tensor]) -> torch.Tensor:
    """``J J^T``: inner products of the per-pair gradients, ``(B, B)`` in float64."""
    n = per_pair[0].shape[0]
    gram = torch.zeros(n, n, dtype=torch.float64)
    for g in per_pair:
        flat = g.reshape(n, -1)
        gram += (flat @ flat.T).to(torch.float64).cpu()
    return gram
