"""Linear scalarisation (MORLHF, weighted DPO): the preference vector is the weight vector."""

from __future__ import annotations

from moalign.moo.base import Combination, CombinationRule, Needs, ObjectiveStats, uniform_or


class LinearScalarization(CombinationRule):
    """``w = preference`` (uniform when none is given): the fixed trade-off baseline every method is compared with."""

    name = "linear"
    needs: frozenset[Needs] = frozenset()

    def weights(self, stats: ObjectiveStats) -> Combination:
        return Combination(weights=uniform_or(stats.preference, stats.num_objectives))
