"""The mixed-preference LoRA layer: every row of a batch (and, with routers, every token) gets its own mixture
of the experts, ``O(x) = W x + Σ_j w_j(x) B_j A_j x``, in two matmuls whatever the number of experts.

All experts' factors of one module are stacked: ``A`` is ``(Σ r_j, d_in)`` and ``B`` is ``(d_out, Σ r_j)``, and
each rank row remembers its expert. A forward computes ``A x`` once, scales each rank by its expert's weight for
that row, and applies ``B``; nothing is merged, copied or stored per request. On a GPU, without autograd, the
three steps run as one Triton kernel (:mod:`moalign.hoe.fused`).

The weights of a call live in a :class:`MixingWeights` object made by :class:`moalign.hoe.HoEModel` for that
call and reached through a context variable, so concurrent calls (threads, asyncio tasks) cannot see each
other's weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn

from moalign.hoe.experts import linear_weight
from moalign.hoe.fused import can_fuse, mixture_lora_update_


@dataclass
class MixingWeights:
    """The expert weights of one forward call.

    Attributes:
        fixed: ``(B, E)`` input-independent weights per row (anchors without routers, or given directly).
        router_weights: ``(B, R)`` preference-routing weights of the router anchors (None without routers).
        routers: the R :class:`RouterExpert` modules those columns belong to.
        per_block: block index → ``(B, T, E)`` weights including the routers' contribution, filled as blocks run.
        fixed_per_rank: ``fixed`` spread over a layer's stacked ranks, per rank layout and dtype, made by the first
            layer that needs it; one dict may serve every forward of a generation (same ``fixed``).
        routed_per_rank: the same for the blocks in ``per_block``, dropped when a block's weights are replaced.
    """

    fixed: torch.Tensor
    router_weights: torch.Tensor | None = None
    routers: Sequence[nn.Module] = ()
    per_block: dict[int, torch.Tensor] = field(default_factory=dict)
    fixed_per_rank: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)
    routed_per_rank: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)

    def for_block(self, block: int) -> torch.Tensor:
        """``(B, T, E)`` or ``(B, 1, E)`` weights for the layers of one transformer block."""
        routed = self.per_block.get(block)
        return routed if routed is not None else self.fixed[:, None, :]

    def set_routed(self, block: int, weights: torch.Tensor) -> None:
        """Block ``block``'s weights for this forward, routers included."""
        self.per_block[block] = weights
        for key in [k for k in self.routed_per_rank if k[0] == block]:
            del self.routed_per_rank[key]

    def per_rank(self, block: int, expert_of_rank: torch.Tensor, layout: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """:meth:`for_block` with each expert's weight repeated over its ranks (``layout``: the rank of each
        expert; ``expert_of_rank``: the expert of each stacked rank), made once per block and layout rather
        than once per layer, since every layer of a transformer block shares them."""
        routed = block in self.per_block
        cache = self.routed_per_rank if routed else self.fixed_per_rank
        key = (block if routed else None, layout, dtype, expert_of_rank.device)
        weights = cache.get(key)
        if weights is None:
            weights = cache[key] = self.for_block(block).to(dtype).index_select(-1, expert_of_rank)
        return weights


_CURRENT: ContextVar[MixingWeights | None] = ContextVar("moalign_hoe_mixing", default=None)


@contextmanager
def mixing(weights: MixingWeights) -> Iterator[MixingWeights]:
    """Make ``weights`` the expert weights of every mixture layer called inside the block (this context only)."""
    token = _CURRENT.set(weights)
    try:
        yield weights
    finally:
        _CURRENT.reset(token)


def route_block(block: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of transformer block ``block``: add the routers' per-token weights, read from the block's
    input hidden state, to the call's fixed weights (a no-op without routers)."""
    weights = current_mixing()
    if weights.router_weights is None or not weights.routers:
        return
    hidden = args[0] if args else kwargs["hidden_states"]
    routed = weights.fixed[:, None, :].to(hidden.device)
    for column, router in enumerate(weights.routers):
        routed = routed + weights.router_weights[:, column, None, None] * router(block, hidden)
    weights.set_routed(block, routed)


def current_mixing() -> MixingWeights:
    weights = _CURRENT.get()
    if weights is None:
        raise RuntimeError("a HoE mixture layer ran outside a HoEModel call; call the HoEModel (or use "
                           "moalign.hoe.layer.mixing) so each row has expert weights")
    return weights


class MixtureLoraLinear(nn.Module):
    """A frozen linear layer plus all experts' LoRA updates, weighted per row by the current :class:`MixingWeights`.

    Args:
        base_layer: the original ``nn.Linear`` (or GPT-2 ``Conv1D``); kept frozen and called as is.
        factors: per expert, ``(A (r_j, d_in), B (d_out, r_j))`` with scaling folded into ``B`` (``r_j`` may be 0).
        block: index of the transformer block the layer belongs to (routers are per block).
    """

    def __init__(self, base_layer: nn.Module, factors: Sequence[tuple[torch.Tensor, torch.Tensor]], block: int):
        super().__init__()
        self.base_layer = base_layer
        self.block = block
        weight = linear_weight(base_layer)
        self.out_features, self.in_features = weight.shape
        dtype = weight.dtype
        a = torch.cat([f[0].to(dtype) for f in factors], dim=0) if factors else weight.new_zeros((0, self.in_features))
        b = torch.cat([f[1].to(dtype) for f in factors], dim=1) if factors else weight.new_zeros((self.out_features, 0))
        self.lora_A = nn.Parameter(a.to(weight.device), requires_grad=False)
        # B is kept transposed, (Σ r_j, d_out), the layout the forward's addmm reads
        self.lora_B_t = nn.Parameter(b.t().contiguous().to(weight.device), requires_grad=False)
        self.ranks = [int(f[0].shape[0]) for f in factors]
        self.rank_layout = tuple(self.ranks)
        self.use_fused_kernel = True  # one Triton kernel for the update where it applies (fused.can_fuse)
        owner = torch.repeat_interleave(torch.arange(len(self.ranks)), torch.tensor(self.ranks, dtype=torch.long))
        self.register_buffer("expert_of_rank", owner.to(weight.device), persistent=False)

    @property
    def num_experts(self) -> int:
        return len(self.ranks)

    @property
    def lora_B(self) -> torch.Tensor:
        """All experts' ``B`` side by side, ``(d_out, Σ r_j)`` (a view of the stored transpose)."""
        return self.lora_B_t.t()

    def expert_factors(self, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert ``expert``'s ``(A, B)`` in this layer."""
        start = sum(self.ranks[:expert])
        stop = start + self.ranks[expert]
        return self.lora_A[start:stop], self.lora_B[:, start:stop]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.lora_A.shape[0] == 0:
            return out
        rank_weights = current_mixing().per_rank(self.block, self.expert_of_rank, self.rank_layout, x.dtype)
        if self.use_fused_kernel and can_fuse(out, x, self.lora_A, self.lora_B_t, rank_weights):
            try:
                return mixture_lora_update_(out, x, self.lora_A, self.lora_B_t, rank_weights)
            except Exception as error:  # Triton cannot build or launch it here: answer with the PyTorch form
                self.use_fused_kernel = False
                warnings.warn(f"HoE's fused update kernel failed ({type(error).__name__}: {error}); layer "
                              f"{self.block} uses the PyTorch form from now on", RuntimeWarning, stacklevel=2)
        hidden = nn.functional.linear(x, self.lora_A) * rank_weights
        lora_b_t = self.lora_B_t
        if hidden.dtype != out.dtype:  # the base output's dtype, which autocast may have lowered
            hidden = hidden.to(out.dtype)
        if lora_b_t.dtype != out.dtype:
            lora_b_t = lora_b_t.to(out.dtype)
        # accumulate hidden @ B^T into the base output in place: one kernel, no copy of ``out`` (linear layers
        # return contiguous outputs; autograd allows it, as no backward formula of a linear layer reads its output)
        if not out.is_contiguous():
            out = out.contiguous()
        out.view(-1, out.shape[-1]).addmm_(hidden.reshape(-1, hidden.shape[-1]), lora_b_t)
        return out


class RouterExpert(nn.Module):
    """HoE level 2, one anchor: a linear router in every transformer block scoring the anchor's candidate experts
    from the block's input hidden state (softmax over the candidates, per token).

    Routers start with zero weights and biases ``init_logits``, i.e. input-independent weights (HoEModel passes the
    anchor's parameter-free routing), so an untrained router behaves like preference routing at its anchor.
    """

    def __init__(self, hidden_size: int, num_blocks: int, candidates: Sequence[int], num_experts: int,
                 init_logits: Sequence[float] | None = None):
        super().__init__()
        self.candidates = list(candidates)
        self.num_experts = num_experts
        self.register_buffer("index", torch.tensor(self.candidates, dtype=torch.long), persistent=False)
        self.blocks = nn.ModuleList(nn.Linear(hidden_size, len(self.candidates)) for _ in range(num_blocks))
        bias = torch.tensor(list(init_logits)) if init_logits is not None else torch.zeros(len(self.candidates))
        with torch.no_grad():
            for router in self.blocks:
                router.weight.zero_()
                router.bias.copy_(bias)

    def forward(self, block: int, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, T, E)`` expert weights of one block: the softmax over the candidates, zero elsewhere."""
        router = self.blocks[block]
        scores = torch.softmax(router(hidden.to(router.weight.dtype)).float(), dim=-1)
        out = scores.new_zeros((*scores.shape[:-1], self.num_experts))
        return out.index_copy(-1, self.index, scores)
