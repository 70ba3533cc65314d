"""The manifest of a HoE model (``hoe_config.json``): what a saved folder holds and how to route preferences."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moalign.errors import MoalignError

CONFIG_NAME = "hoe_config.json"
WEIGHTS_NAME = "hoe_model.safetensors"
FORMAT_VERSION = 1


class HoEError(MoalignError, ValueError):
    """A HoE model or request that cannot be used (bad folder, experts that do not fit, routing without routers)."""


@dataclass
class ExpertConfig:
    """One LoRA expert: its name, the preference it serves and its rank in each module it adapts."""

    name: str
    preference: list[float]
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass
class AnchorConfig:
    """A point of preference routing. Either one expert (``expert``), used alone, or a router expert over
    ``candidates`` (HoE level 2) whose router weights are in the weights file."""

    preference: list[float]
    expert: int | None = None
    candidates: list[int] | None = None

    @property
    def has_router(self) -> bool:
        return self.candidates is not None


@dataclass
class HoEConfig:
    """Everything but the tensors.

    Attributes:
        base_model: the base model's name or path (portable name when saved).
        base_model_local: the local copy it was built on, used when this machine still has it (the default
            model's portable name is a Hub id, which an offline machine cannot fetch).
        objectives: objective names, in preference order.
        experts: the LoRA experts, in the order of the stacked factors.
        anchors: the preference-routing points.
        n_nearest: anchors combined per preference (default: as many as objectives).
        blocks: the module path of the transformer blocks (e.g. ``model.layers``), where routers attach.
    """

    base_model: str
    objectives: list[str]
    experts: list[ExpertConfig]
    anchors: list[AnchorConfig]
    n_nearest: int | None = None
    blocks: str | None = None
    base_model_local: str | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> None:
        Path(directory, CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> HoEConfig:
        path = Path(directory, CONFIG_NAME)
        if not path.exists():
            raise HoEError(f"{directory}: not a HoE model folder (no {CONFIG_NAME})")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format_version") != FORMAT_VERSION:
                raise HoEError(f"{path}: format version {raw.get('format_version')}, this moalign reads {FORMAT_VERSION}")
            raw["experts"] = [ExpertConfig(**e) for e in raw["experts"]]
            raw["anchors"] = [AnchorConfig(**a) for a in raw["anchors"]]
            return cls(**raw)
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise HoEError(f"{path}: malformed ({error})") from None
