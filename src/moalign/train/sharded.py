"""Exact multi-objective geometry on sharded parameters (FSDP2 through ``accelerate``).

Under FSDP2 every trainable parameter is a ``DTensor`` and each rank holds one shard of it. A backward
pass reduce-scatters the gradient, so after it each rank holds its shard of the rank-averaged gradient.
The shards partition the parameters, so ``<g_i, g_j> = sum over ranks of <shard_i, shard_j>``: the
K x K Gram is an all-reduce of K² numbers and no gradient is ever gathered. The combined direction
``sum_k w_k g_k`` is formed shard by shard. Checkpoints gather full tensors (every rank takes part) and
load them back by keeping each rank's own slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from moalign.train.gradients import gram_from_grads


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return None
    return DTensor


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (an FSDP2 parameter, its gradient or its optimizer state)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a ``DTensor``; any other tensor as it is."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (an all-gather for a ``DTensor``: every rank must call it)."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def register_shards(model: torch.nn.Module) -> None:
    """Register every FSDP2 module's sharded parameters. The root keeps its gathered parameters after a forward
    (FSDP2 does not reshard the root then), and a write into those would be dropped at its next reshard."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` laid out as ``like`` is: this rank's slice as a ``DTensor`` when ``like`` is one.

    Every rank holds ``full`` (read from the same checkpoint), so no data is sent.
    """
    if not is_sharded(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    local = full.to(device=like.to_local().device, dtype=like.dtype)
    return distribute_tensor(local, like.device_mesh, like.placements, src_data_rank=None)


def sharded_gram(grads: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """``G_ij = <g_i, g_j>`` over all ranks: the Gram of this rank's shards, then one all-reduce."""
    gram = gram_from_grads([[local_part(t) for t in g] for g in grads])
    if dist.is_available() and dist.is_initialized():
        device = local_part(grads[0][0]).device if grads and grads[0] else torch.device("cpu")
        gram = gram.to(device)
        dist.all_reduce(gram)
    return gram.cpu()


def reduce_scatter_flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The sum over ranks of ``tensors`` flattened into one vector, of which this rank keeps an equal slice.

    Data-parallel ranks use it to shard each objective's gradient as FSDP would, so that the Gram is
    again an all-reduce of K² numbers and only the combined direction is gathered.
    """
    world = dist.get_world_size()
    flat = torch.cat([t.reshape(-1) for t in tensors])
    padded = torch.nn.functional.pad(flat, (0, (-flat.numel()) % world))
    shard = torch.empty(padded.numel() // world, dtype=flat.dtype, device=flat.device)
    dist.reduce_scatter_tensor(shard, padded)
    return shard


def all_gather_as(shard: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gather the slices made by :func:`reduce_scatter_flat` back into tensors shaped as ``like``."""
    full = torch.empty(shard.numel() * dist.get_world_size(), dtype=shard.dtype, device=shard.device)
    dist.all_gather_into_tensor(full, shard)
    out, offset = [], 0
    for t in like:
        out.append(full[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return out
