"""``moalign models prepare``: turn the default GGUF model into a cached, fast-loading checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from moalign.storage import cache_dir

CHECK_QUESTION = "What is the capital of France?"


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="prepare and inspect models")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    prepare = sub.add_parser("prepare", help="de-quantise the default SmolLM2 GGUF once and cache it")
    prepare.add_argument("--gguf", type=Path, help="a GGUF file to prepare instead of the default model's")
    prepare.add_argument("--out", type=Path, help="output directory (default: the moalign cache)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if a cached checkpoint exists")
    prepare.add_argument("--check", action="store_true", help=f"load the result and answer {CHECK_QUESTION!r}")
    prepare.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from moalign.models import find_default_gguf, prepare_gguf_model
    from moalign.models.smollm2 import DEFAULT_MODEL_NAME

    gguf = args.gguf or find_default_gguf()
    out = args.out or cache_dir() / "models" / (DEFAULT_MODEL_NAME if args.gguf is None else gguf.stem)
    path = prepare_gguf_model(gguf, out, force=args.force)
    print(f"prepared: {path}")
    if args.check:
        from moalign.models import generate_responses, load_model, load_tokenizer

        answer = generate_responses(load_model(path), load_tokenizer(path), [CHECK_QUESTION], max_new_tokens=24)[0]
        print(f"{CHECK_QUESTION} -> {answer}")
    return 0
