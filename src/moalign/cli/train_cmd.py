"""``moalign train dpo --config cfg.yaml [--key value ...]``: multi-objective DPO from a YAML config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model (dpo)")
    sub = train.add_subparsers(dest="train_command", required=True, metavar="METHOD")
    dpo = sub.add_parser(
        "dpo",
        help="multi-objective DPO with a combination rule (default mgda_decoupled)",
        description="Every key of MultiObjectiveDPOConfig can be set in the YAML file or as --key value.",
    )
    dpo.add_argument("--config", type=Path, help="YAML file of MultiObjectiveDPOConfig keys")
    dpo.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                     help="resume from the latest checkpoint in output_dir (or the one given)")
    dpo.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    dpo.set_defaults(handler=run_dpo, accepts_overrides=True)


def run_dpo(args: argparse.Namespace) -> int:
    from moalign.config import load_config, parse_overrides
    from moalign.train import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    overrides = parse_overrides(args.overrides)
    if args.resume:
        overrides["resume_from"] = args.resume
    if args.overwrite:
        overrides["overwrite_output_dir"] = "true"
    config = load_config(MultiObjectiveDPOConfig, args.config, overrides)
    trainer = MultiObjectiveDPOTrainer(config)
    summary = trainer.train()
    if not trainer.accelerator.is_main_process:
        return 0
    print(json.dumps({"eval_before": summary["eval_before"], "eval_after": summary["eval_after"]}, indent=2))
    print(f"saved: {Path(config.output_dir) / 'final'}")
    return 0
