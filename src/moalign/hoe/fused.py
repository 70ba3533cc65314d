"""The mixture-LoRA update in one GPU kernel (Triton): ``out += ((x Aᵀ) ⊙ w) B`` for every row at once.

Decoding a small batch on a GPU costs about one unit per kernel, whatever the kernel does; the PyTorch form of the
update is three kernels per linear layer (``x Aᵀ``, the per-row weights, ``+= h B``), so HoE on SmolLM2 launches
about 1.5x the kernels of a merged LoRA per token (``benchmarks/bench_hoe.py --count-ops``). This kernel does the
three in one: each program takes a block of rows and a block of output columns, computes those rows' rank
activations over the whole input (A is small: every program reads it), weights them, and adds its block of
``h B`` into ``out`` in place. It is for inference (no autograd) on CUDA tensors; :class:`MixtureLoraLinear`
falls back to the PyTorch form everywhere else, and on CPU the kernel runs under Triton's interpreter in tests.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

#: rows above which the PyTorch form is used (a prompt's forward: large matmuls, where cuBLAS is the better kernel)
MAX_FUSED_ROWS = 128


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _weights_fit(rank_weights: torch.Tensor, batch: int, seq: int, rank: int) -> bool:
    """Whether ``rank_weights`` gives every row (``(B, 1, R)``) or every token (``(B, T, R)``) a weight per rank."""
    return tuple(rank_weights.shape) in ((batch, seq, rank), (batch, 1, rank))


def can_fuse(out: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b_t: torch.Tensor,
             rank_weights: torch.Tensor) -> bool:
    """Whether :func:`mixture_lora_update_` applies: CUDA, no gradient wanted, one dtype, a decoding-sized batch,
    weights per row (or per token) and rank."""
    return (x.is_cuda and triton_available() and x.dim() == 3 and x.numel() > 0
            and _weights_fit(rank_weights, x.shape[0], x.shape[1], lora_a.shape[0])
            and not (torch.is_grad_enabled() and (x.requires_grad or rank_weights.requires_grad))
            and not torch.is_autocast_enabled(x.device.type)
            and x.dtype == lora_a.dtype == lora_b_t.dtype == out.dtype
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and out.is_contiguous() and x.numel() // x.shape[-1] <= MAX_FUSED_ROWS)


def mixture_lora_update_(out: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b_t: torch.Tensor,
                         rank_weights: torch.Tensor) -> torch.Tensor:
    """Add ``((x Aᵀ) ⊙ w) B`` to ``out`` in place and return it.

    Shapes: ``x`` ``(B, T, d_in)``, ``out`` ``(B, T, d_out)`` (contiguous), ``lora_a`` ``(R, d_in)``, ``lora_b_t``
    ``(R, d_out)``, ``rank_weights`` ``(B, T, R)`` or ``(B, 1, R)`` (one weight per row for all its tokens).
    """
    import triton

    from moalign.hoe.fused_kernel import mixture_lora_update

    batch, seq, d_in = x.shape
    rank, d_out = lora_b_t.shape
    if not _weights_fit(rank_weights, batch, seq, rank):
        raise ValueError(f"rank weights {tuple(rank_weights.shape)} do not fit {batch} rows of {seq} tokens "
                         f"and {rank} ranks")
    x2d = x.reshape(batch * seq, d_in)
    out2d = out.view(batch * seq, d_out)
    block_n, block_k, block_o = 16, 64, 64
    grid = (triton.cdiv(batch * seq, block_n), triton.cdiv(d_out, block_o))
    mixture_lora_update[grid](
        x2d, lora_a, lora_b_t, rank_weights, out2d, batch * seq, d_in, d_out, rank, seq,
        x2d.stride(0), x2d.stride(1), lora_a.stride(0), lora_a.stride(1), lora_b_t.stride(0), lora_b_t.stride(1),
        rank_weights.stride(0), 0 if rank_weights.shape[1] == 1 else rank_weights.stride(1), rank_weights.stride(2),
        out2d.stride(0), out2d.stride(1),
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_O=block_o, RANK_PAD=max(16, triton.next_power_of_2(rank)),
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
    )
    return out
