"""Reference-model log-probabilities for DPO: adapters disabled, a frozen copy, or precomputed once."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from moalign.data import PreferenceDataset
from moalign.models import sequence_logprobs

Batch = dict[str, torch.Tensor]


def dataset_fingerprint(dataset: PreferenceDataset, *extra: object) -> str:
    """A short hash of the pairs and any settings that change the reference log-probs."""
    digest = hashlib.sha1()
    for record in dataset.to_records():
        digest.update(json.dumps(record, sort_keys=True).encode())
    digest.update(json.dumps([str(e) for e in extra]).encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def precompute_reference_logps(
    model: torch.nn.Module,
    dataset: PreferenceDataset,
    make_batch: Callable[[Sequence[int]], Batch],
    batch_size: int,
    cache_file: str | Path,
    *,
    progress: bool = True,
) -> torch.Tensor:
    """``(N, 2)`` log-probs of every pair's two responses under ``model`` (the policy before training),
    cached in ``cache_file``; a cached table is reused."""
    cache_file = Path(cache_file)
    if cache_file.exists():
        table = load_file(str(cache_file))["logps"]
        if table.shape == (len(dataset), 2):
            return table
    was_training = model.training
    model.eval()
    table = torch.empty(len(dataset), 2, dtype=torch.float32)
    for start in tqdm(range(0, len(dataset), batch_size), desc="reference log-probs", disable=not progress, leave=False):
        index = list(range(start, min(start + batch_size, len(dataset))))
        batch = make_batch(index)
        logps = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"]).float().cpu()
        n = len(index)
        table[start:start + n, 0], table[start:start + n, 1] = logps[:n], logps[n:]
    model.train(was_training)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")  # every rank writes; the rename is atomic
    save_file({"logps": table}, str(tmp))
    os.replace(tmp, cache_file)
    return table


class ReferenceLogps:
    """Reference log-probs of a collated batch, by one of three strategies.

    Args:
        mode: ``adapter_disabled`` (``model`` is a PEFT model; run it with adapters off),
            ``copy`` (run ``frozen``), or ``precomputed`` (look rows up in ``tables[split]``).
    """

    def __init__(self, mode: str, model: torch.nn.Module, frozen: torch.nn.Module | None = None,
                 tables: dict[str, torch.Tensor] | None = None):
        self.mode, self.model, self.frozen, self.tables = mode, model, frozen, tables or {}

    @torch.no_grad()
    def __call__(self, batch: Batch, index: Sequence[int], split: str = "train") -> torch.Tensor:
        device = batch["input_ids"].device
        if self.mode == "precomputed":
            rows = self.tables[split][list(index)]
            return torch.cat([rows[:, 0], rows[:, 1]]).to(device)
        args = (batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        if self.mode == "copy":
            return sequence_logprobs(self.frozen, *args)
        with self.model.disable_adapter():
            return sequence_logprobs(self.model, *args)
