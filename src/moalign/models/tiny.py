"""A tiny Llama-architecture model with a byte-level BPE tokenizer, built fully offline.

Fast tests and ``moalign demo --tiny`` use it. The tokenizer is trained on a generated English-like
corpus, has pad/eos/bos tokens and a chat template, and round-trips through the Auto classes.
"""

from __future__ import annotations

import random
from pathlib import Path

from moalign.storage import atomic_directory

SPECIAL_TOKENS = ["<|pad|>", "<|eos|>", "<|bos|>", "<|unk|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

_SUBJECTS = ["the cat", "a friend", "the team", "my neighbour", "the teacher", "our garden", "the river",
             "a small robot", "the city", "this recipe", "the weather", "the old book"]
_VERBS = ["helps", "explains", "finds", "builds", "keeps", "shows", "needs", "writes", "likes", "changes"]
_OBJECTS = ["a simple plan", "the best answer", "clear steps", "fresh bread", "a kind word", "the summary",
            "many ideas", "a short list", "good advice", "the main reason"]
_TAILS = ["today.", "every morning.", "with care.", "because it matters.", "in a few minutes.", "for everyone.",
          "without any fuss.", "and that is great!", "so please try it.", "as you asked."]


def tiny_corpus(n_sentences: int = 3000, seed: int = 0) -> list[str]:
    """Generated English-like sentences for training the tiny tokenizer (deterministic per seed)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        for _ in range(n_sentences)
    ]


def build_tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512):
    """Train a byte-level BPE on ``corpus`` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus if corpus is not None else tiny_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        eos_token="<|eos|>",
        bos_token="<|bos|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    vocab_size: int = 512,
    max_positions: int = 512,
    force: bool = False,
) -> Path:
    """Build (or reuse) a randomly initialised tiny Llama and its tokenizer in ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and not force:
        return out_dir
    tokenizer = build_tiny_tokenizer(vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's global random state untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir
