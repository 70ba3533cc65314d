"""Shared fixtures. Tests run offline, on one thread, with the moalign cache in a per-session temp dir
(except the prepared SmolLM2 checkpoint, which is reused across sessions: see ``smollm2_path``)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels (HoE's fused update) run on the CPU under Triton's interpreter; it has to be on before anything
# imports triton, as triton decides at import whether its own library functions are interpreted
os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch
from hypothesis import settings

# No per-example deadline: it measures the box (two test workers share two cores) rather than the code. CI also
# derandomises hypothesis so a red run is reproducible and cannot come and go by chance; local runs keep exploring
# new examples.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "local"))

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("moalign-cache")
    os.environ["MOALIGN_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from moalign.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path):
    from moalign.models import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real default model, prepared once per machine under ``$MOALIGN_TEST_CACHE`` (or ~/.cache)."""
    from moalign.models import prepare_default_model

    root = os.environ.get("MOALIGN_TEST_CACHE") or os.path.expanduser("~/.cache/moalign-tests")
    return prepare_default_model(root)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``. Tests that need it skip on a user's clone without it, but fail in CI
    (``MOALIGN_REQUIRE_SHARED=1``), where it must be present."""
    if not SHARED_DATA.exists():
        if os.environ.get("MOALIGN_REQUIRE_SHARED") == "1":
            pytest.fail(f"{SHARED_DATA} is missing but MOALIGN_REQUIRE_SHARED=1")
        pytest.skip(f"{SHARED_DATA} is not available (it sits beside the checkout only in CI and development)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
