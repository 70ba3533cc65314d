"""Atomic, pickle-free training checkpoints.

A checkpoint directory holds the trainable parameters and the optimizer's tensors as safetensors,
and everything else (optimizer hyper-parameters, scheduler, combination-rule state, RNG states, the
step) as JSON. It is written to a temporary directory and renamed into place, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from moalign.errors import MoalignError
from moalign.storage import atomic_directory
from moalign.train.sharded import full_tensor, shard_like

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(MoalignError, ValueError):
    """A checkpoint that is missing, incomplete, corrupt or does not match the model."""


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (shared parameters appear once), whole even when sharded."""
    return {n: full_tensor(p.detach()).contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters in the order ``optimizer.state_dict()`` numbers them."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        meta["state"][str(index)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = full_tensor(value).contiguous().cpu()
                meta["state"][str(index)][key] = "tensor"
            else:
                meta["state"][str(index)][key] = value
    return tensors, meta


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def save_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    extra: dict[str, Any],
    write: bool = True,
) -> Path:
    """Write a checkpoint for ``step`` atomically to ``directory`` and return it.

    With sharded (FSDP2) parameters every rank must call this, since full tensors are gathered; only the
    rank with ``write=True`` writes.
    """
    params = trainable_state(model)
    optim_tensors, optim_meta = _optimizer_tensors(optimizer)
    rng_tensors, rng_meta = _rng_state()
    if not write:
        return Path(directory)
    with atomic_directory(directory) as tmp:
        save_file(params, str(tmp / "trainable.safetensors"))
        save_file(optim_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {"step": step, "optimizer": optim_meta, "scheduler": scheduler.state_dict(), "rng": rng_meta, **extra}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
    return Path(directory)


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-<step>`` folder, oldest first; other folders are ignored."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
             if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``output_dir``, or ``None``."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def load_checkpoint(
    directory: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore parameters, optimizer, scheduler and RNG states; return the JSON state (step, rule, ...)."""
    directory = Path(directory)
    try:
        state = json.loads((directory / "trainer_state.json").read_text())
        params = load_file(str(directory / "trainable.safetensors"))
        optim_tensors = load_file(str(directory / "optimizer.safetensors"))
        rng_tensors = load_file(str(directory / "rng.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read checkpoint {directory}: {exc}") from None
    own = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(own) != set(params):
        missing, unexpected = sorted(set(own) - set(params))[:3], sorted(set(params) - set(own))[:3]
        raise CheckpointError(f"checkpoint {directory} does not match the model (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        for name, p in own.items():
            if p.shape != params[name].shape:
                raise CheckpointError(f"checkpoint {directory}: {name} has shape {tuple(params[name].shape)}, model has {tuple(p.shape)}")
            p.copy_(shard_like(params[name].to(p.dtype), p))
    meta = state["optimizer"]
    by_index = _optimizer_params(optimizer)

    def restore(index: int, value: torch.Tensor) -> torch.Tensor:
        param = by_index[index]  # moments shaped like a sharded parameter are sharded like it
        return shard_like(value, param) if value.shape == param.shape else value

    optim_state = {
        int(index): {k: (restore(int(index), optim_tensors[f"{index}.{k}"]) if v == "tensor" else v) for k, v in entry.items()}
        for index, entry in meta["state"].items()
    }
    optimizer.load_state_dict({"state": optim_state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(rng_tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [rng_tensors[k] for k in sorted(k for k in rng_tensors if k.startswith("torch_cuda_"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    py = state["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["rng"]["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    return state
