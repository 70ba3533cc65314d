"""PCGrad (Yu et al. 2020), computed from the Gram matrix alone.

Each objective's gradient is projected off the normal plane of every other gradient it conflicts
with (negative inner product), in a random order; the update is the sum. Every projected gradient
stays a linear combination of the raw ones, ``pc_i = sum_j C_ij g_j``, and the inner products it needs
are ``pc_i . g_j = (C G)_ij``, so the result is the weight vector ``1^T C`` without touching a gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from moalign.moo.base import Combination, CombinationRule, Needs, ObjectiveStats


class PCGrad(CombinationRule):
    """Projecting conflicting gradients. ``seed`` fixes the random projection order across steps."""

    name = "pcgrad"
    needs = frozenset({Needs.GRAM})

    def __init__(self, seed: int = 0, eps: float = 1e-12):
        self.rng = np.random.default_rng(seed)
        self.eps = eps

    def weights(self, stats: ObjectiveStats) -> Combination:
        gram = stats.gram.detach().to(torch.float64).cpu().numpy()
        k = gram.shape[0]
        coeffs = np.eye(k)
        for i in range(k):
            for j in self.rng.permutation(k):
                if j == i:
                    continue
                dot = coeffs[i] @ gram[:, j]
                if dot < 0 and gram[j, j] > self.eps:
                    coeffs[i, j] -= dot / gram[j, j]
        return Combination(weights=torch.as_tensor(coeffs.sum(axis=0)), info={"conflicts": int((gram < 0).sum() // 2)})

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
