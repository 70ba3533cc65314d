"""A HoE model on the tiny base (random experts) and ``moalign serve`` running it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import make_expert, moalign
from server_process import Server

OBJECTIVES = ["helpful", "harmless"]


@pytest.fixture(scope="session")
def hoe_dir(tiny_model_path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    experts = [make_expert(tiny_model_path, root / f"expert_{name}", seed=40 + k, scale=0.3)
               for k, name in enumerate(OBJECTIVES)]
    out = moalign("hoe", "build", "--experts", ",".join(f"{n}={p}" for n, p in zip(OBJECTIVES, experts)),
                  "--model", tiny_model_path, "--out", root / "hoe")
    assert out.returncode == 0, out.stderr[-2000:]
    report = {"objectives": OBJECTIVES, "reference_point": [0, 0], "methods": {
        "hoe": {"points": [{"preference": [w, 1 - w], "scores": [0.2 + 0.6 * w, 0.8 - 0.5 * w * w]}
                           for w in (0.0, 0.25, 0.5, 0.75, 1.0)]},
        "linear": {"points": [{"preference": [w, 1 - w], "scores": [0.1 + 0.6 * w, 0.7 - 0.6 * w]}
                              for w in (0.0, 0.5, 1.0)]}}}
    (root / "hoe" / "front").mkdir()
    (root / "hoe" / "front" / "report.json").write_text(json.dumps(report))
    return root / "hoe"


@pytest.fixture(scope="session")
def server(hoe_dir, tmp_path_factory):
    """The server most tests share: a 100 ms batching window, so requests sent together share a batch."""
    running = Server([hoe_dir, "--name", "tiny-hoe", "--batch-window-ms", "100", "--max-batch-size", "16"],
                     log=tmp_path_factory.mktemp("logs") / "server.log")
    yield running
    running.stop()
