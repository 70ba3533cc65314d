"""The ``moalign`` command: ``demo``, ``data check``, ``models prepare``, ``train dpo|rm|rl``, ``hoe ...``,
``eval front|winrate``, ``serve``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from moalign import __version__
from moalign.cli import data_cmd, demo_cmd, eval_cmd, hoe_cmd, models_cmd, serve_cmd, train_cmd
from moalign.errors import MoalignError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moalign", description="Multi-objective alignment of language models.")
    parser.add_argument("--version", action="version", version=f"moalign {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error, user errors included")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo_cmd, data_cmd, models_cmd, train_cmd, hoe_cmd, eval_cmd, serve_cmd):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (MoalignError, OSError) as exc:
        # a MoalignError is the user's input; an OSError about a named file is a path the user gave. Anything
        # else is a bug in moalign and keeps its traceback.
        if args.debug or (isinstance(exc, OSError) and exc.filename is None):
            raise
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else exc
        print(f"moalign: error: {message}", file=sys.stderr)
        return 2
