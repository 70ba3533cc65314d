"""Decoding throughput of HoE against one LoRA and against MOD, one process, one run.

    python benchmarks/bench_hoe.py [--model smollm2] [--batch 8] [--tokens 32] [--rank 16] [--rounds 3] [--threads 2]

Every row decodes the same batch of bundled prompts greedily for exactly ``--tokens`` new tokens (no early stop)
with the same loop (``moalign.models.decoding.decode``, KV cache), so only the model's forward differs:

* ``base``: the base model;
* ``merged_lora``: the base with one rank-``r`` LoRA merged into its weights (the reference, 1.0);
* ``peft_lora``: the same LoRA unmerged, through PEFT;
* ``hoe_mixed``: a HoE model with K = 3 experts and a centre anchor (4 stacked experts of rank ``r`` on every
  linear layer), every row of the batch at its own random preference;
* ``mod_k{2,3,4}``: MOD, one forward per objective's expert per token.

Experts are random rank-``r`` LoRAs on all linear layers (speed does not depend on what they learned). The table
shows the median tokens/s over rounds and its ratio to ``merged_lora`` measured in the same round.
Targets (issue 11): ``hoe_mixed`` ≥ 0.8× ``merged_lora`` and ≥ 2× ``mod_k3``.
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
from moalign.models.decoding import decode, model_step  # noqa: E402
from moalign.hoe.mod import mod_step  # noqa: E402
from moalign.models import LoraSpec, add_lora, load_model, load_tokenizer, render_prompt  # noqa: E402
from moalign.models.generation import left_pad  # noqa: E402
from moalign.tasks import bundled_prompts  # noqa: E402


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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

        base = load_model(args.model).to(device)
        merged = PeftModel.from_pretrained(load_model(args.model), str(dirs[0])).merge_and_unload().to(device)
        peft_lora = PeftModel.from_pretrained(load_model(args.model), str(dirs[0])).eval().to(device)
        hoe = hoe_model(3, anchors=True)
        preferences = np.random.default_rng(0).dirichlet(np.ones(3), size=args.batch)
        mods = {k: hoe_model(k, anchors=False) for k in (2, 3, 4)}
        mod_preferences = {k: np.random.default_rng(k).dirichlet(np.ones(k), size=args.batch) for k in mods}
        steps = {
            "base": lambda: model_step(base),
            "merged_lora": lambda: model_step(merged),
            "peft_lora": lambda: model_step(peft_lora),
            "hoe_mixed": lambda: model_step(hoe, mixing_weights=hoe.mixing_weights(preferences, batch=args.batch)),
            **{f"mod_k{k}": (lambda k=k: mod_step(mods[k], mod_preferences[k])) for k in mods},
        }
        rates: dict[str, list[float]] = {name: [] for name in steps}
        ratios: dict[str, list[float]] = {name: [] for name in steps}
        for name, make in steps.items():  # warm-up
            decode(make(), input_ids, attention_mask, max_new_tokens=2, eos_token_ids=[], pad_token_id=pad)
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
          f"LoRA rank {args.rank}, {args.rounds} rounds")
    print("| method | tokens/s (median) | ratio to merged_lora (median of rounds) | ratio, lowest to highest round |")
    print("|---|---|---|---|")
    for name in steps:
        print(f"| {name} | {statistics.median(rates[name]):.1f} | {statistics.median(ratios[name]):.2f} | "
              f"{min(ratios[name]):.2f}–{max(ratios[name]):.2f} |")
    hoe_ratio = statistics.median(ratios["hoe_mixed"])
    vs_mod = statistics.median([h / m for h, m in zip(rates["hoe_mixed"], rates["mod_k3"])])
    print(f"hoe_mixed / merged_lora = {hoe_ratio:.2f} (target >= 0.8); hoe_mixed / mod_k3 = {vs_mod:.2f} (target >= 2)")


if __name__ == "__main__":
    main()
