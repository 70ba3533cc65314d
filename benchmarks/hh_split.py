"""Split the HH-RLHF helpful and harmless test files into training pairs and held-out front prompts.

The last ``--front N`` single-turn dialogues of each file become ``front.jsonl`` (the prompts fronts are judged
on); every pair whose prompt is one of them is removed from ``helpful-train.jsonl`` / ``harmless-train.jsonl``, so
no policy or reward model trained on those files has seen a front prompt. Records are written unchanged (the
``hh_rlhf`` adapter reads them).

    python benchmarks/hh_split.py --data ../shared/data --out runs/modpo-hh/data --front 24
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

FILES = {"helpful": "hh-rlhf-helpful-base-test/test.jsonl.gz", "harmless": "hh-rlhf-harmless-base-test/test.jsonl.gz"}


def prompt_of(record: dict) -> str:
    """The dialogue up to the last assistant turn (the adapter's prompt)."""
    return record["chosen"][: record["chosen"].rfind("\n\nAssistant:")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--front", type=int, default=24, help="front prompts taken from each file")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    front = []
    for name, relative in FILES.items():
        with gzip.open(args.data / relative, "rt", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        single_turn = [r for r in records if prompt_of(r).count("\n\nHuman:") == 1]
        held = {prompt_of(r) for r in single_turn[-args.front:]}
        front.extend(single_turn[-args.front:])
        kept = [r for r in records if prompt_of(r) not in held]
        with open(args.out / f"{name}-train.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in kept)
        print(f"{name}: {len(kept)} training pairs, {len(held)} front prompts held out")
    with open(args.out / "front.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in front)


if __name__ == "__main__":
    main()
