"""Decoding throughput of HoE against one LoRA and against MOD, one process, one run.

    python benchmarks/bench_hoe.py [--model smollm2] [--batch 8] [--tokens 32] [--rank 16] [--rounds 3] [--threads 2]
                                   [--methods base,merged_lora,hoe_mixed,...] [--decoding dynamic] [--profile]
    python benchmarks/bench_hoe.py --count-ops [...]   # operators per token instead of times

Every row decodes the same batch of bundled prompts greedily for exactly ``--tokens`` new tokens (no early stop)
with the same loop (``moalign.models.decoding.decode``, KV cache) and the same ``--decoding`` for every row, so
only the model's forward differs. ``--decoding dynamic``: the cache grows by a token per step, every kernel
launched from Python; ``static``: a preallocated cache (fixed shapes); ``cuda_graph``: the static step captured
once per decode as a CUDA graph and replayed (GPU only; MOD captures one graph per expert). A static or graphed
run first says how many rows decode the same greedy tokens as the dynamic decoding. The rows:

* ``base``: the base model;
* ``merged_lora``: the base with one rank-``r`` LoRA merged into its weights (the reference, 1.0);
* ``peft_lora``: the same LoRA unmerged, through PEFT;
* ``hoe_mixed``: a HoE model with K = 3 experts and a centre anchor (4 stacked experts of rank ``r`` on every
  linear layer), every row of the batch at its own random preference; on a GPU its update runs as one Triton
  kernel per layer (``moalign.hoe.fused``);
* ``hoe_unfused``: the same with the update as three PyTorch kernels (what the CPU always runs);
* ``mod_k{2,3,4}``: MOD, one forward per objective's expert per token.

Experts are random rank-``r`` LoRAs on all linear layers (speed does not depend on what they learned). The table
shows the median tokens/s over rounds and its ratio to ``merged_lora`` measured in the same round.
Targets (issue 11): ``hoe_mixed`` ≥ 0.8× ``merged_lora`` and ≥ 2× ``mod_k3``. ``--profile`` then runs
``torch.profiler`` over one decode of ``merged_lora`` and of ``hoe_mixed`` and prints where their time goes (on a
GPU: how many kernels a token launches and how long they run, against the CPU time spent launching them).

``--count-ops`` times nothing: it counts the aten operators each method dispatches per new token (the prompt's
forward left out), and those that are not views. On a GPU, where a small model decoding a small batch is bound by
launches rather than arithmetic, the non-view count is about the kernels a token launches (with or without a CUDA
graph, which removes the launch overhead but not the kernels), and it can be read on any machine. HoE's fused
Triton kernel (GPU only) is not an aten operator, so there it would go uncounted: count on the CPU, where
``hoe_mixed`` runs the PyTorch form (three operators per linear layer; the fused kernel is one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moalign.hoe import HoEModel, expert_from_adapter, merged_expert  # noqa: E402
from moalign.models.decoding import decode  # noqa: E402
from moalign.hoe.mod import mod_step  # noqa: E402
from moalign.models import LoraSpec, add_lora, load_model, load_tokenizer, render_prompt  # noqa: E402
from moalign.models.generation import left_pad  # noqa: E402
from moalign.models.static_decoding import DECODING_MODES, check_decoding, decoding_step  # noqa: E402
from moalign.tasks import bundled_prompts  # noqa: E402
from op_counter import OpCounter  # noqa: E402


def random_adapter(model_name: str, path: Path, rank: int, seed: int) -> Path:
    model = add_lora(load_model(model_name), LoraSpec(r=rank, alpha=rank))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", help="comma-separated subset of the rows (merged_lora is always measured)")
    parser.add_argument("--decoding", choices=DECODING_MODES, default="dynamic",
                        help="how every method's decoding step runs (see above)")
    parser.add_argument("--profile", action="store_true", help="profile one decode of merged_lora and hoe_mixed")
    parser.add_argument("--count-ops", action="store_true", help="count operators per token instead of timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    check_decoding(args.decoding, device)  # before minutes of model building
    tokenizer = load_tokenizer(args.model)
    pad = tokenizer.pad_token_id
    rows = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
            for p in bundled_prompts(seed=0)[:args.batch]]
    input_ids, attention_mask = left_pad(rows, pad)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)

    with tempfile.TemporaryDirectory() as tmp:
        dirs = [random_adapter(args.model, Path(tmp) / f"e{k}", args.rank, k) for k in range(4)]
        from peft import PeftModel

        def hoe_model(k: int, anchors: bool) -> HoEModel:
            experts = [expert_from_adapter(f"o{i}", np.eye(k)[i], d) for i, d in enumerate(dirs[:k])]
            if anchors:
                experts.append(merged_expert("centre", [1.0 / k] * k, experts, rank=args.rank))
            return HoEModel.from_experts(load_model(args.model), experts, [f"o{i}" for i in range(k)]).to(device)

        preferences = {k: np.random.default_rng(k).dirichlet(np.ones(k), size=args.batch) for k in (2, 3, 4)}

        def step_of(model, decoding, **forward_kwargs):
            return decoding_step(model, decoding, args.tokens, **forward_kwargs)

        def hoe_step(fused_kernel: bool = True):
            hoe = hoe_model(3, anchors=True)
            for layer in hoe.mixture_layers.values():
                layer.use_fused_kernel = fused_kernel
            mixed = np.random.default_rng(0).dirichlet(np.ones(3), size=args.batch)
            return lambda decoding=args.decoding: step_of(hoe, decoding,
                                                          mixing_weights=hoe.mixing_weights(mixed, batch=args.batch))

        def mod(k: int):
            model = hoe_model(k, anchors=False)
            return lambda decoding=args.decoding: mod_step(
                model, preferences[k], lambda w: step_of(model, decoding, mixing_weights=w))

        def plain(model):
            model = model.to(device)
            return lambda decoding=args.decoding: step_of(model, decoding)

        builders = {
            "base": lambda: plain(load_model(args.model)),
            "merged_lora": lambda: plain(PeftModel.from_pretrained(load_model(args.model), str(dirs[0])).merge_and_unload()),
            "peft_lora": lambda: plain(PeftModel.from_pretrained(load_model(args.model), str(dirs[0])).eval()),
            "hoe_mixed": hoe_step,
            "hoe_unfused": lambda: hoe_step(fused_kernel=False),
            **{f"mod_k{k}": (lambda k=k: mod(k)) for k in (2, 3, 4)},
        }
        wanted = set(args.methods.split(",")) | {"merged_lora"} if args.methods else set(builders)
        if wanted - set(builders):
            parser.error(f"unknown methods {sorted(wanted - set(builders))}; choose from {', '.join(builders)}")
        steps = {name: build() for name, build in builders.items() if name in wanted}
        if args.count_ops:
            count_ops(steps, input_ids, attention_mask, pad, args)
            return
        rates: dict[str, list[float]] = {name: [] for name in steps}
        ratios: dict[str, list[float]] = {name: [] for name in steps}
        for name, make in steps.items():  # warm-up; a static or graphed step is checked against the dynamic one
            if args.decoding == "dynamic":
                decode(make(), input_ids, attention_mask, max_new_tokens=2, eos_token_ids=[], pad_token_id=pad)
                continue
            tokens = [decode(make(mode), input_ids, attention_mask, max_new_tokens=args.tokens, eos_token_ids=[],
                             pad_token_id=pad) for mode in (args.decoding, "dynamic")]
            same = sum(a == b for a, b in zip(*tokens))
            print(f"{name}: {same} of {args.batch} rows decode the same {args.tokens} greedy tokens with {args.decoding} "
                  "as with dynamic decoding", flush=True)
        for round_index in range(args.rounds):
            round_rates = {}
            for name, make in steps.items():
                start = time.perf_counter()
                decode(make(), input_ids, attention_mask, max_new_tokens=args.tokens, eos_token_ids=[], pad_token_id=pad)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                round_rates[name] = args.batch * args.tokens / (time.perf_counter() - start)
            for name, rate in round_rates.items():
                rates[name].append(rate)
                ratios[name].append(rate / round_rates["merged_lora"])
            # each round as it ends, so a run cut short still leaves its measurements
            print(f"round {round_index}: " + ", ".join(f"{name} {ratios[name][-1]:.2f}" for name in steps), flush=True)
    print(f"model {args.model}, device {device}, threads {args.threads}, batch {args.batch}, {args.tokens} new tokens, "
          f"LoRA rank {args.rank}, {args.rounds} rounds, {args.decoding} decoding")
    print("| method | tokens/s (median) | ratio to merged_lora (median of rounds) | ratio, lowest to highest round |")
    print("|---|---|---|---|")
    for name in steps:
        print(f"| {name} | {statistics.median(rates[name]):.1f} | {statistics.median(ratios[name]):.2f} | "
              f"{min(ratios[name]):.2f}–{max(ratios[name]):.2f} |")
    if "hoe_mixed" in steps:
        print(f"hoe_mixed / merged_lora = {statistics.median(ratios['hoe_mixed']):.2f} (target >= 0.8)")
    if {"hoe_mixed", "mod_k3"} <= set(steps):
        vs_mod = statistics.median([h / m for h, m in zip(rates["hoe_mixed"], rates["mod_k3"])])
        print(f"hoe_mixed / mod_k3 = {vs_mod:.2f} (target >= 2)")
    if args.profile:
        for name in [n for n in ("merged_lora", "hoe_mixed") if n in steps]:
            profile_decode(name, steps[name], input_ids, attention_mask, pad, args.tokens)


def count_ops(steps: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad: int,
              args: argparse.Namespace) -> None:
    """Print the operators per new token of each method's decode (the first, prompt, step not counted)."""
    counts = {}
    for name, make in steps.items():
        step, counter, calls = make(), OpCounter(), [0]

        def counting(*step_args, step=step, counter=counter, calls=calls):
            calls[0] += 1
            if calls[0] == 1:
                return step(*step_args)
            with counter:
                return step(*step_args)

        decode(counting, input_ids, attention_mask, max_new_tokens=args.tokens, eos_token_ids=[], pad_token_id=pad)
        counts[name] = (counter.ops / (calls[0] - 1), counter.kernels / (calls[0] - 1))
    print(f"model {args.model}, batch {args.batch}, {args.tokens} new tokens, LoRA rank {args.rank}, "
          f"{args.decoding} decoding: operators per new token")
    print("| method | aten ops | non-view ops (about the kernels) | non-view ops, ratio to merged_lora |")
    print("|---|---|---|---|")
    reference = counts["merged_lora"][1]
    for name, (ops, kernels) in counts.items():
        print(f"| {name} | {ops:.0f} | {kernels:.0f} | {kernels / reference:.2f} |")


def profile_decode(name: str, make, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad: int, tokens: int) -> None:
    """Where one decode's time goes: per token, the kernels launched and their time (GPU), the CPU time, the top ops."""
    from torch.profiler import ProfilerActivity, profile

    cuda = input_ids.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        decode(make(), input_ids, attention_mask, max_new_tokens=tokens, eos_token_ids=[], pad_token_id=pad)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    line = f"== {name}: {sum(e.self_cpu_time_total for e in events) / tokens / 1e3:.2f} ms of CPU per token"
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        line += (f", {sum(e.count for e in kernels) / tokens:.0f} kernels per token running "
                 f"{sum(e.self_device_time_total for e in kernels) / tokens / 1e3:.2f} ms")
    print(line)
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48))


if __name__ == "__main__":
    main()
