"""Evaluation: preference grids, front metrics (non-dominated set, hypervolume), bootstrap CIs, win rates."""

from moalign.eval.grid import preference_grid, simplex_grid
from moalign.eval.pareto import FrontError, hypervolume, non_dominated, spread, weighted_utility
from moalign.eval.report import default_reference, hypervolume_interval, plot_fronts, write_front_report
from moalign.eval.stats import Interval, WinRate, bootstrap_interval, count_outcomes, outcomes
from moalign.eval.sweep import FrontPoint, sweep

__all__ = [
    "FrontError",
    "FrontPoint",
    "Interval",
    "WinRate",
    "bootstrap_interval",
    "count_outcomes",
    "default_reference",
    "hypervolume",
    "hypervolume_interval",
    "non_dominated",
    "outcomes",
    "plot_fronts",
    "preference_grid",
    "simplex_grid",
    "spread",
    "sweep",
    "weighted_utility",
    "write_front_report",
]
