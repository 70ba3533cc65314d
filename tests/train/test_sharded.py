"""The sharding helpers on 2 gloo processes: slices of a sum gather back to it, and the all-reduced Gram
of the slices equals the Gram of the whole summed gradients (odd sizes, so the last slice is padded)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from moalign.train.sharded import all_gather_as, reduce_scatter_flat, sharded_gram

SHAPES = [(3, 5), (6,), (2, 2, 3)]  # 33 numbers: odd


def rank_grads(rank: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + rank)
    return [[torch.randn(shape, generator=g) for shape in SHAPES] for _ in range(3)]  # K = 3 objectives


def worker(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        grads = rank_grads(rank)
        shards = [reduce_scatter_flat(g) for g in grads]
        gathered = [all_gather_as(s, grads[0]) for s in shards]
        results[rank] = {"gathered": gathered, "gram": sharded_gram([[s] for s in shards])}
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slices_gather_to_the_sum_and_their_gram_is_the_full_gram():
    results = mp.Manager().dict()
    mp.spawn(worker, args=(free_port(), results), nprocs=2, join=True)
    summed = [[a + b for a, b in zip(ga, gb)] for ga, gb in zip(rank_grads(0), rank_grads(1))]
    flat = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in summed]).double()
    for rank in (0, 1):
        for got, want in zip(results[rank]["gathered"], summed):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
        torch.testing.assert_close(results[rank]["gram"], flat @ flat.T, rtol=1e-5, atol=1e-5)
