"""PAMA's closed-form combination of per-objective Noon-PPO advantages (arXiv 2508.07768).

Noon PPO clips every objective's advantage at zero, ``A_i = max(A'_i, 0)``, and a token whose
probability ratio exceeds ``1 + eps`` contributes nothing: ``I(A_i) = A_i`` if ``ratio <= 1 + eps``,
else 0. Instead of min-norm over parameter gradients (O(K^2 d)), PAMA minimises
``(sum_i c_i I(A_i))^2`` over the simplex. Its solution (Theorem 1) is the projection of 0 onto
``[min_i I(A_i), max_i I(A_i)]``: 0 when the interval holds 0, else the end nearest 0. With the
non-negative Noon advantages that is ``min_i I(A_i)``: an item is reinforced only as much as its
worst objective allows. Each item (token, or sequence for outcome rewards) is solved independently
in O(K). The implied simplex coefficients ``c`` are one-hot on the deciding objective; they are logged as
diagnostics (which objective sets the minimum, how often), not as weights: the update is not
``sum_i c_i grad L_i`` of any fixed per-objective losses.
"""

from __future__ import annotations

import torch

from moalign.moo.base import AdvantageCombination, AdvantageRule, CombinationError


def project_zero_onto_range(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``values`` (shape ``(..., K)``): ``s* = argmin_{s in [min, max]} |s|`` and simplex
    weights ``c`` with ``sum_i c_i values_i = s*``.

    When the range holds zero, ``c`` mixes the minimum and maximum objectives so that the sum is exactly
    zero; otherwise it is one-hot on the end nearest zero (ties share the weight equally).
    """
    low, high = values.min(dim=-1).values, values.max(dim=-1).values
    s = torch.where(low > 0, low, torch.where(high < 0, high, torch.zeros_like(low)))
    at_low = (values == low.unsqueeze(-1)).to(values.dtype)
    at_high = (values == high.unsqueeze(-1)).to(values.dtype)
    one_low = at_low / at_low.sum(-1, keepdim=True)
    one_high = at_high / at_high.sum(-1, keepdim=True)
    span = high - low
    span = torch.where(span > 0, span, torch.ones_like(span))  # only used where high > low
    mixed = one_low * (high / span).unsqueeze(-1) + one_high * (-low / span).unsqueeze(-1)
    straddles = ((low <= 0) & (high >= 0) & (high > low)).unsqueeze(-1)
    c = torch.where(straddles, mixed, torch.where((low > 0).unsqueeze(-1), one_low, one_high))
    return s, c


def noon_indicator(advantages: torch.Tensor, ratio: torch.Tensor | None = None, clip_eps: float = 0.2) -> torch.Tensor:
    """``I(A_i)``: advantages clipped at zero, and zeroed where ``ratio > 1 + clip_eps``.

    ``advantages`` has shape ``(..., K)``; ``ratio`` (policy / rollout policy) has shape ``(...)``.
    """
    clipped = advantages.clamp_min(0.0)
    if ratio is not None:
        clipped = clipped * (ratio <= 1.0 + clip_eps).unsqueeze(-1).to(clipped.dtype)
    return clipped


class PAMA(AdvantageRule):
    """Closed-form PAMA combination of per-objective advantages.

    :meth:`combine_advantages` takes the raw per-objective advantages ``(..., K)`` (after per-objective
    whitening, if the trainer does it) and the probability ratio for the ``I(A)`` indicator, and returns
    the combined per-item advantage ``s*``. Diagnostics: ``zero_fraction`` (items with ``s* = 0``),
    ``deciding_share`` (per objective, the mean implied coefficient ``c``: how often it sets the minimum).

    Args:
        clip_eps: the PPO clip range used by the ``I(A)`` indicator.
        noon: clip advantages at zero first (Noon PPO); off, the general Theorem 1 projection is used.
    """

    name = "pama"

    def __init__(self, clip_eps: float = 0.2, noon: bool = True):
        self.clip_eps, self.noon = clip_eps, noon

    def combine_advantages(self, advantages: torch.Tensor, ratio: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None) -> AdvantageCombination:
        """Combine ``advantages`` ``(..., K)``; ``mask`` ``(...)`` selects the items that count in the diagnostics."""
        if advantages.ndim < 1 or advantages.shape[-1] < 1:
            raise CombinationError(f"advantages must have shape (..., K), got {tuple(advantages.shape)}")
        values = noon_indicator(advantages, ratio, self.clip_eps) if self.noon else advantages
        s, c = project_zero_onto_range(values)
        keep = torch.ones(s.shape, dtype=torch.bool, device=s.device) if mask is None else mask.bool()
        flat_c = c[keep].reshape(-1, c.shape[-1])
        deciding = flat_c.mean(0) if flat_c.shape[0] else torch.full((c.shape[-1],), float("nan"))
        zero_fraction = float((s[keep] == 0).float().mean()) if keep.any() else float("nan")
        return AdvantageCombination(advantage=s, diagnostics={"zero_fraction": zero_fraction,
                                                              "deciding_share": deciding.to(torch.float64)})
