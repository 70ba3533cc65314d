"""Evaluate an untrained RL policy on 5 held-out prompts with rewards that read only the prompt; write the report.

Used in one process (imported) and in two (``torchrun ... rl_eval_worker.py OUT MODEL``): every process samples
its share of the prompts, and the report gathered over the processes must be the one-process report.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

from moalign.objectives import RuleScorer
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer
from step_worker import leave


def prompt_rewards() -> list[RuleScorer]:
    """Two rewards of the prompt alone, so the report cannot depend on what was sampled, only on which prompts
    were scored, how often, and in which order (the bootstrap interval reads the order)."""
    return [RuleScorer("length", lambda p, r: float(len(str(p)))),
            RuleScorer("checksum", lambda p, r: float(zlib.crc32(str(p).encode()) % 97))]


def evaluate(model_path: str, out: Path) -> dict:
    config = MultiObjectiveRLConfig(model=model_path, task="bundled", eval_prompts=5, max_new_tokens=4,
                                    output_dir=str(out / "rl"), use_lora=False)
    trainer = MultiObjectiveRLTrainer(config, rewards=prompt_rewards())
    report = trainer.evaluate()
    (out / f"eval-{trainer.accelerator.process_index}.json").write_text(json.dumps(report))
    return report


if __name__ == "__main__":
    evaluate(sys.argv[2], Path(sys.argv[1]))
    leave()
