"""How K objectives combine into one update: one small class per rule behind one interface.

``get_rule(name, **options)`` builds a rule by name; ``rule.needs`` says what to compute for it and
``rule.combine(ObjectiveStats(...))`` returns the weights (and the direction, given gradients).
"""

from __future__ import annotations

from collections.abc import Callable

from moalign.moo.base import (
    Combination,
    CombinationError,
    CombinationRule,
    Needs,
    ObjectiveStats,
    gram_matrix,
)
from moalign.moo.cagrad import CAGrad
from moalign.moo.group_dro import GroupDRO
from moalign.moo.linear import LinearScalarization
from moalign.moo.mgda import MinNormRule, mgda, mgda_decoupled, mgda_normalised, mgda_ub, representation_gram
from moalign.moo.min_norm import min_norm_weights
from moalign.moo.pama import PAMA, noon_indicator, project_zero_onto_range
from moalign.moo.pcgrad import PCGrad

RULES: dict[str, Callable[..., CombinationRule]] = {
    "linear": LinearScalarization,
    "mgda": mgda,
    "mgda_normalised": mgda_normalised,
    "mgda_decoupled": mgda_decoupled,
    "mgda_ub": mgda_ub,
    "group_dro": GroupDRO,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "pama": PAMA,
}


def get_rule(name: str, **options) -> CombinationRule:
    """Build a combination rule by name; unknown names list the known ones."""
    try:
        factory = RULES[name]
    except KeyError:
        raise ValueError(f"unknown combination rule {name!r}; rules are {sorted(RULES)}") from None
    return factory(**options)


__all__ = [
    "CAGrad",
    "Combination",
    "CombinationError",
    "CombinationRule",
    "GroupDRO",
    "LinearScalarization",
    "MinNormRule",
    "Needs",
    "ObjectiveStats",
    "PAMA",
    "PCGrad",
    "RULES",
    "get_rule",
    "gram_matrix",
    "min_norm_weights",
    "noon_indicator",
    "project_zero_onto_range",
    "representation_gram",
]
