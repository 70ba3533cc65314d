"""How K objectives combine into one update: one small class per rule behind one interface.

``get_rule(name, **options)`` builds a weight rule by name; ``rule.needs`` says what to compute for it and
``rule.combine(ObjectiveStats(...))`` returns the weights (and the direction, given gradients).
``get_advantage_rule(name)`` builds a rule that combines per-objective RL advantages (PAMA).
"""

from __future__ import annotations

from collections.abc import Callable

from moalign.moo.base import (
    GRAM_NEEDS,
    AdvantageCombination,
    AdvantageRule,
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
}
"""Weight rules: the update is ``sum_i w_i grad L_i``."""

ADVANTAGE_RULES: dict[str, Callable[..., AdvantageRule]] = {"pama": PAMA}
"""Rules that combine per-objective advantages inside an RL loss."""


def get_rule(name: str, **options) -> CombinationRule:
    """Build a weight rule by name; unknown names list the known ones."""
    if name in ADVANTAGE_RULES:
        raise ValueError(f"rule {name!r} combines per-token RL advantages, not losses: use it with `moalign train rl` "
                         f"(get_advantage_rule); weight rules are {sorted(RULES)}")
    try:
        factory = RULES[name]
    except KeyError:
        raise ValueError(f"unknown combination rule {name!r}; rules are {sorted(RULES)}") from None
    return factory(**options)


def get_advantage_rule(name: str, **options) -> AdvantageRule:
    """Build an advantage rule (PAMA) by name."""
    try:
        factory = ADVANTAGE_RULES[name]
    except KeyError:
        raise ValueError(f"unknown advantage rule {name!r}; advantage rules are {sorted(ADVANTAGE_RULES)}") from None
    return factory(**options)


__all__ = [
    "ADVANTAGE_RULES",
    "AdvantageCombination",
    "AdvantageRule",
    "CAGrad",
    "Combination",
    "CombinationError",
    "CombinationRule",
    "GRAM_NEEDS",
    "GroupDRO",
    "LinearScalarization",
    "MinNormRule",
    "Needs",
    "ObjectiveStats",
    "PAMA",
    "PCGrad",
    "RULES",
    "get_advantage_rule",
    "get_rule",
    "gram_matrix",
    "min_norm_weights",
    "noon_indicator",
    "project_zero_onto_range",
    "representation_gram",
]
