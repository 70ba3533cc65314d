"""Evaluation: preference grids, front metrics (non-dominated set, hypervolume), bootstrap CIs, win rates."""

from moalign.eval.grid import preference_grid, simplex_grid
from moalign.eval.methods import (
    METHOD_KINDS,
    GenerationSettings,
    Method,
    MethodError,
    build_method,
    model_method,
    parse_method_specs,
    register_method_kind,
    sweep_methods,
)
from moalign.eval.pareto import FrontError, hypervolume, non_dominated, spread, weighted_utility
from moalign.eval.report import (
    default_reference,
    hypervolume_interval,
    plot_fronts,
    preference_utility,
    write_front_report,
)
from moalign.eval.stats import Interval, WinRate, bootstrap_interval, count_outcomes, outcomes
from moalign.eval.sweep import FrontPoint, sweep
from moalign.eval.winrate import golden_win_rates, write_winrate_report

__all__ = [
    "METHOD_KINDS",
    "FrontError",
    "FrontPoint",
    "GenerationSettings",
    "Interval",
    "Method",
    "MethodError",
    "WinRate",
    "bootstrap_interval",
    "build_method",
    "count_outcomes",
    "default_reference",
    "golden_win_rates",
    "hypervolume",
    "hypervolume_interval",
    "model_method",
    "non_dominated",
    "outcomes",
    "parse_method_specs",
    "plot_fronts",
    "preference_grid",
    "preference_utility",
    "register_method_kind",
    "simplex_grid",
    "spread",
    "sweep",
    "sweep_methods",
    "weighted_utility",
    "write_front_report",
    "write_winrate_report",
]
