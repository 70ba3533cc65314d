"""Throughput and latency of ``moalign serve`` with mixed preferences against one fixed preference.

    python benchmarks/bench_serve.py [--model smollm2] [--concurrency 1,8,32] [--tokens 32] [--rounds 2] [--threads 2]

Builds a HoE model (K = 3 random rank-``--rank`` LoRA experts on every linear layer plus the TIES-merged centre
anchor, as ``bench_hoe.py``), starts ``moalign serve`` on loopback, and for each number of concurrent clients
sends ``max(2 * clients, 8)`` chat requests (bundled prompts, greedy, ``--tokens`` new tokens at most) twice:
every request at the same preference (``fixed``), and every request at its own random preference (``mixed``).
Each client sends its next request when its previous answer arrives. The order of the two modes alternates
between rounds; the table shows medians over rounds: generated tokens per second of wall time, and the p50 and
p95 request latency. Target (issue 12): mixed ≥ 0.8× fixed throughput at every concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench_hoe import random_adapter  # noqa: E402
from moalign.hoe import HoEModel, expert_from_adapter, merged_expert  # noqa: E402
from moalign.models import load_model, load_tokenizer  # noqa: E402
from moalign.tasks import bundled_prompts  # noqa: E402
from server_process import Server  # noqa: E402

OBJECTIVES = ["o0", "o1", "o2"]


def build_hoe(model: str, folder: Path, rank: int) -> Path:
    dirs = [random_adapter(model, folder / f"e{k}", rank, k) for k in range(len(OBJECTIVES))]
    experts = [expert_from_adapter(o, np.eye(3)[i], d) for i, (o, d) in enumerate(zip(OBJECTIVES, dirs))]
    experts.append(merged_expert("centre", [1 / 3] * 3, experts, rank=rank))
    hoe = HoEModel.from_experts(load_model(model), experts, OBJECTIVES, base_model=model,
                                tokenizer=load_tokenizer(model))
    hoe.save_pretrained(folder / "hoe")
    return folder / "hoe"


async def load(url: str, clients: int, requests: int, tokens: int, preferences: np.ndarray) -> dict[str, float]:
    prompts = bundled_prompts(seed=0)
    latencies: list[float] = []
    generated = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal generated
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": "bench", "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
                    "max_tokens": tokens, "temperature": 0, "preference": preferences[i].tolist()}
            started = time.monotonic()
            response = await http.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            latencies.append(time.monotonic() - started)
            generated += response.json()["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.monotonic() - started
    return {"tokens_per_s": generated / wall, "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)), "tokens": generated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--device", help="the server's device (default: cuda when available)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_hoe(args.model, Path(tmp), args.rank)
        server = Server([folder, "--name", "bench", "--max-batch-size", args.max_batch_size, "--batch-window-ms", "10",
                         *(["--device", args.device] if args.device else [])],
                        env={"OMP_NUM_THREADS": str(args.threads)}, log=Path(tmp) / "server.log")
        try:
            asyncio.run(load(server.url, 2, 2, 4, np.full((2, 3), 1 / 3)))  # warm-up
            results: dict[tuple[int, str], list[dict[str, float]]] = {}
            for round_index in range(args.rounds):
                for clients in levels:
                    requests = max(2 * clients, 8)
                    modes = ["fixed", "mixed"] if round_index % 2 == 0 else ["mixed", "fixed"]
                    for mode in modes:
                        rng = np.random.default_rng(round_index * 100 + clients)
                        preferences = (rng.dirichlet(np.ones(3), size=requests) if mode == "mixed"
                                       else np.tile(rng.dirichlet(np.ones(3)), (requests, 1)))
                        result = asyncio.run(load(server.url, clients, requests, args.tokens, preferences))
                        results.setdefault((clients, mode), []).append(result)
                        print(f"round {round_index} clients {clients} {mode}: {result['tokens_per_s']:.1f} tokens/s, "
                              f"p50 {result['p50']:.2f} s, p95 {result['p95']:.2f} s", file=sys.stderr, flush=True)
            metrics = server.metrics()
            peak = server.peak_rss_mib()
        finally:
            server.stop()
    print(f"model {args.model}, HoE K = 3 + centre anchor, rank {args.rank}, {args.tokens} tokens max, "
          f"{args.threads} threads, max batch {args.max_batch_size}, {args.rounds} rounds; largest batch "
          f"{metrics['moalign_batch_size_max']:.0f}, server peak RSS {peak:.0f} MiB")
    print("| clients | preferences | tokens/s | p50 latency (s) | p95 latency (s) | mixed / fixed throughput |")
    print("|---|---|---|---|---|---|")
    for clients in levels:
        med = {mode: {k: statistics.median(r[k] for r in results[(clients, mode)])
                      for k in ("tokens_per_s", "p50", "p95")} for mode in ("fixed", "mixed")}
        ratio = statistics.median(m["tokens_per_s"] / f["tokens_per_s"]
                                  for m, f in zip(results[(clients, "mixed")], results[(clients, "fixed")]))
        for mode in ("fixed", "mixed"):
            r = med[mode]
            print(f"| {clients} | {mode} | {r['tokens_per_s']:.1f} | {r['p50']:.2f} | {r['p95']:.2f} | "
                  f"{f'{ratio:.2f}' if mode == 'mixed' else ''} |")


if __name__ == "__main__":
    main()
