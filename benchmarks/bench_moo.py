"""Cost of the combination rules: Gram computation vs. the solve, per rule, K objectives, d parameters.

    python benchmarks/bench_moo.py [--ks 2,3,4,8,16] [--ds 100000,10000000] [--repeats 50]

Prints one table: the Gram time (``grads @ grads.T`` for K x d float32 gradients) and, once the Gram
is known, the median solve time of each rule. PAMA works on advantages (batch 8 x 512 tokens x K)
instead of a Gram. Target: every solve <= 1 ms for K <= 8.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from moalign.moo import ObjectiveStats, get_advantage_rule, get_rule, gram_matrix

GRAM_RULES = ["linear", "mgda", "mgda_normalised", "mgda_decoupled", "group_dro", "pcgrad", "cagrad"]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="2,3,4,8,16")
    parser.add_argument("--ds", default="100000,10000000")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    ds = [int(float(d)) for d in args.ds.split(",")]
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; times in ms (median of {args.repeats})")
    header = ["K", "gram d=" + "/".join(f"{d:.0e}" for d in ds)] + GRAM_RULES + ["pama (8x512 tok)"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for k in ks:
        gram_times = []
        for d in ds:
            grads = torch.randn(k, d)
            gram_times.append(median_ms(lambda g=grads: gram_matrix(g), max(3, args.repeats // 10)))
            del grads
        base = torch.randn(k, 4096)
        gram = gram_matrix(base + 0.3 * base[:1])  # correlated objectives, like real ones
        losses = torch.rand(k) + 0.1
        row = [str(k), "/".join(f"{t:.2f}" for t in gram_times)]
        for name in GRAM_RULES:
            rule = get_rule(name)
            stats = ObjectiveStats(losses=losses, gram=gram)
            row.append(f"{median_ms(lambda: rule.combine(stats), args.repeats):.3f}")
        advantages = torch.randn(8, 512, k)
        pama = get_advantage_rule("pama")
        row.append(f"{median_ms(lambda: pama.combine_advantages(advantages), args.repeats):.3f}")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
