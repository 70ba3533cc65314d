"""``moalign train dpo|modpo|rm|rl --config cfg.yaml [--key value ...]``: train from a YAML config plus overrides."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

#: method -> (config class, trainer class, help), as ``module:name`` so the CLI starts without torch.
METHODS = {
    "dpo": ("moalign.train:MultiObjectiveDPOConfig", "moalign.train:MultiObjectiveDPOTrainer",
            "multi-objective DPO with a combination rule (default mgda_decoupled)"),
    "modpo": ("moalign.train:MODPOConfig", "moalign.train:MODPOTrainer",
              "MODPO: DPO on one objective's pairs with the other objectives' rewards as a margin"),
    "rm": ("moalign.train:RewardModelConfig", "moalign.train:RewardModelTrainer",
           "reward models: one Bradley-Terry head per objective on a shared backbone"),
    "rl": ("moalign.train:MultiObjectiveRLConfig", "moalign.train:MultiObjectiveRLTrainer",
           "multi-objective PPO: PAMA (default), MORLHF or a gradient rule on per-objective PPO losses"),
    "routers": ("moalign.hoe.train_routers:RouterTrainingConfig", "moalign.hoe.train_routers:HoERouterTrainer",
                "HoE router experts: PPO on smooth Tchebycheff at an anchor preference"),
}
TRAIN_METHODS = ("dpo", "modpo", "rm", "rl")


def _load(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help=f"train a model ({', '.join(TRAIN_METHODS)})")
    sub = train.add_subparsers(dest="train_command", required=True, metavar="METHOD")
    for method in TRAIN_METHODS:
        add_training_parser(sub, method, method, METHODS[method][2])


def add_training_parser(sub: argparse._SubParsersAction, command: str, method: str, help_text: str) -> None:
    """``COMMAND --config cfg.yaml [--resume] [--overwrite] [--key value ...]`` training ``METHODS[method]``."""
    config_name = METHODS[method][0].split(":")[1]
    parser = sub.add_parser(command, help=help_text,
                            description=f"Every key of {config_name} can be set in the YAML file or as --key value.")
    parser.add_argument("--config", type=Path, help=f"YAML file of {config_name} keys")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                        help="resume from the latest checkpoint in output_dir (or the one given)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    parser.set_defaults(handler=run_training, accepts_overrides=True, method=method)


def run_training(args: argparse.Namespace) -> int:
    from moalign.config import load_config, parse_overrides

    config_spec, trainer_spec, _ = METHODS[args.method]
    overrides = parse_overrides(args.overrides)
    if args.resume:
        overrides["resume_from"] = args.resume
    if args.overwrite:
        overrides["overwrite_output_dir"] = "true"
    config = load_config(_load(config_spec), args.config, overrides)
    trainer = _load(trainer_spec)(config)
    summary = trainer.train()
    if not trainer.accelerator.is_main_process:
        return 0
    print(json.dumps({"eval_before": summary["eval_before"], "eval_after": summary["eval_after"]}, indent=2))
    print(f"saved: {Path(config.output_dir) / 'final'}")
    return 0
