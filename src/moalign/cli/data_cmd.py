"""``moalign data check FILE...``: load preference files and print what is in them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moalign.config import ConfigError
from moalign.data import ADAPTERS, concat_datasets, format_summary, load_preference_data, summarize


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect preference data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="validate files and print counts, label balance, disagreement, lengths")
    check.add_argument("files", nargs="+", help="JSONL/JSON/Parquet/CSV files, saved datasets dirs or Hub names")
    check.add_argument("--adapter", default="native", choices=sorted(ADAPTERS), help="the files' format")
    check.add_argument(
        "--objective",
        action="append",
        help="HH-RLHF: the objective each file labels, once per file in order "
        "(default: 'helpful' or 'harmless' read from the path)",
    )
    check.add_argument("--drop-invalid", action="store_true", help="skip bad rows and report how many")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(handler=run_check)


def _hh_objective(path: str, given: list[str] | None, index: int) -> str:
    if given:
        if len(given) != 1 and len(given) <= index:
            raise ConfigError(f"--objective was given {len(given)} time(s) but there are more files")
        return given[0] if len(given) == 1 else given[index]
    for name in ("harmless", "helpful"):
        if name in Path(path).as_posix():
            return name
    raise ConfigError(f"cannot tell which objective {path} labels; pass --objective")


def run_check(args: argparse.Namespace) -> int:
    datasets = []
    for i, path in enumerate(args.files):
        options = {"objective": _hh_objective(path, args.objective, i)} if args.adapter == "hh_rlhf" else {}
        datasets.append(load_preference_data(path, adapter=args.adapter, drop_invalid=args.drop_invalid, **options))
    summaries = {path: summarize(ds) for path, ds in zip(args.files, datasets)}
    if len(datasets) > 1:
        summaries["(all files)"] = summarize(concat_datasets(datasets))
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print("\n\n".join(format_summary(s, title=f"== {name}") for name, s in summaries.items()))
    return 0
