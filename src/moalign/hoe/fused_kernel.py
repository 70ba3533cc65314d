"""The Triton kernel of :mod:`moalign.hoe.fused` (imported only where Triton is installed)."""

import triton
import triton.language as tl


@triton.jit
def mixture_lora_update(x_ptr, a_ptr, bt_ptr, w_ptr, out_ptr, n_rows, d_in, d_out, rank, seq,
                        sx_n, sx_k, sa_r, sa_k, sb_r, sb_o, sw_b, sw_t, sw_r, so_n, so_o,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr,
                        RANK_PAD: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    ranks = tl.arange(0, RANK_PAD)
    row_ok = rows[:, None] < n_rows
    rank_ok = ranks[None, :] < rank
    h = tl.zeros((BLOCK_N, RANK_PAD), dtype=tl.float32)
    for start in range(0, d_in, BLOCK_K):
        ks = start + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rows[:, None] * sx_n + ks[None, :] * sx_k, mask=row_ok & (ks[None, :] < d_in),
                    other=0.0)
        a = tl.load(a_ptr + ranks[None, :] * sa_r + ks[:, None] * sa_k, mask=rank_ok & (ks[:, None] < d_in),
                    other=0.0)
        h += tl.dot(x, a, input_precision=PRECISION)
    # row n is token n % seq of sequence n // seq; sw_t is 0 where one weight serves every token of a row
    w = tl.load(w_ptr + (rows[:, None] // seq) * sw_b + (rows[:, None] % seq) * sw_t + ranks[None, :] * sw_r,
                mask=row_ok & rank_ok, other=0.0)
    bt = tl.load(bt_ptr + ranks[:, None] * sb_r + cols[None, :] * sb_o,
                 mask=(ranks[:, None] < rank) & (cols[None, :] < d_out), other=0.0)
    update = tl.dot((h * w.to(tl.float32)).to(bt.dtype), bt, input_precision=PRECISION)
    out_ptrs = out_ptr + rows[:, None] * so_n + cols[None, :] * so_o
    out_ok = row_ok & (cols[None, :] < d_out)
    out = tl.load(out_ptrs, mask=out_ok, other=0.0)
    tl.store(out_ptrs, (out.to(tl.float32) + update).to(out.dtype), mask=out_ok)
