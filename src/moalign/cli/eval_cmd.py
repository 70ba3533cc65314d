"""``moalign eval front|winrate``: compare methods by their Pareto fronts, or against golden responses.

Methods are given as ``--methods NAME=KIND,...`` (see :mod:`moalign.eval.methods`): ``base``, a trained
model folder, ``models:A+B+...`` (one model per preference) or ``soup:A+B+...`` (rewarded soups of LoRA
experts). Generations and scores are cached under ``--cache`` (default ``OUT/cache``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from moalign.config import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate methods: Pareto fronts (front) or win rate vs golden (winrate)")
    sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="SUBCOMMAND")
    front = sub.add_parser("front", help="sweep preferences, score every objective, report hypervolume and plots")
    _common(front)
    front.add_argument("--prompts", help="prompt file (field prompt or instruction), or a preference file with "
                       "--prompt-adapter; default: bundled held-out prompts")
    front.add_argument("--prompt-adapter", default="prompts",
                       help="how to read --prompts: 'prompts' (default) or a preference-data adapter such as hh_rlhf "
                            "(its distinct prompts; HH dialogues keep their earlier turns)")
    front.add_argument("--divisions", type=int, default=10, help="preference grid: multiples of 1/DIVISIONS (default 10)")
    front.add_argument("--preferences", help="instead of the grid: preferences separated by ';', e.g. '1,0;0.5,0.5;0,1'")
    front.add_argument("--reference-point", help="hypervolume reference point, one number per objective (default: "
                       "below every method's worst score by 5%% of the range)")
    front.set_defaults(handler=run_front)
    winrate = sub.add_parser("winrate", help="win rate of each method's answers against reference responses")
    _common(winrate)
    winrate.add_argument("--data", required=True, help="file of prompts with golden responses (e.g. AlpacaEval jsonl)")
    winrate.add_argument("--reference-field", help="field of the golden response (default: output, reference or response)")
    winrate.add_argument("--preference", help="preference for methods that take one (soups) and for the overall "
                         "vote; default uniform")
    winrate.add_argument("--tie-margin", type=float, default=0.0, help="reward differences within this are ties")
    winrate.set_defaults(handler=run_winrate)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", required=True, help="NAME=KIND,... with KIND base | PATH | models:P+P+... | soup:P+P+...")
    parser.add_argument("--objectives", help="scorer names, comma-separated (default: the objectives the first trained "
                        "model recorded)")
    parser.add_argument("--judges", help="learned judges: OBJECTIVE=rm:PATH[:HEAD],... (a sequence-classification "
                        "reward model, HEAD an index or id2label name); other objectives use the built-in scorers")
    parser.add_argument("--model", help="base model (default: the one the first adapter records)")
    parser.add_argument("--n-prompts", type=_positive_int, help="use the first N prompts (default: all; bundled: 24)")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=_positive_int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--cache", type=Path, help="generation cache (default OUT/cache)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _model_dirs(specs: list[tuple[str, str]]):
    """Every trained model folder the specs name, in order (unknown kinds and missing folders raise here)."""
    from moalign.eval.methods import spec_model_dirs

    for _, kind in specs:
        yield from spec_model_dirs(kind)


def _objectives(args: argparse.Namespace, specs: list[tuple[str, str]]) -> list[str]:
    from moalign.eval import MethodError
    from moalign.eval.methods import training_summary

    if args.objectives:
        return [o.strip() for o in args.objectives.split(",") if o.strip()]
    for model_dir in _model_dirs(specs):
        recorded = training_summary(model_dir).get("objectives")
        if recorded:
            return list(recorded)
    raise MethodError("no trained model records its objectives; pass --objectives")


def _base_model(args: argparse.Namespace, specs: list[tuple[str, str]]) -> str | None:
    """``--model``, else the base the first adapter records (so ``base`` needs no --model beside adapters)."""
    from moalign.eval.methods import recorded_base_model

    if args.model:
        return args.model
    return next((base for d in _model_dirs(specs) if (base := recorded_base_model(d))), None)


def _prepare(args: argparse.Namespace):
    """Objectives, scorers, methods and generation settings shared by both subcommands."""
    from moalign.eval import GenerationSettings, parse_method_specs
    from moalign.objectives import SCORERS, build_rewards
    from moalign.storage import check_writable

    for folder in (args.out, args.cache or args.out / "cache"):  # before any model loads or answers
        check_writable(folder)
    specs = parse_method_specs(args.methods)
    judges = _parse_judges(args.judges)
    objectives = list(judges) if judges and not args.objectives else _objectives(args, specs)
    if not objectives:
        raise ConfigError("no objectives given")
    for name in objectives:
        if name not in judges and name not in SCORERS:
            raise ConfigError(f"objective {name!r} has no built-in scorer to judge it (built-in scorers are "
                              f"{sorted(SCORERS)}); pass --objectives with scorer names, or a reward model with --judges")
    scorers = build_rewards([judges.get(name, name) for name in objectives])
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.batch_size, args.seed)
    return specs, objectives, scorers, settings, _base_model(args, specs)


def _parse_judges(text: str | None) -> dict[str, str]:
    """``"helpful=rm:runs/rm/final:helpful,harmless=rm:PATH"`` -> ``{objective: reward spec}`` (checked)."""
    from moalign.objectives import parse_reward_spec

    judges: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"bad judge {part!r}; use OBJECTIVE=rm:PATH or OBJECTIVE=rm:PATH:HEAD")
        try:
            name = parse_reward_spec(part)[0]
        except ConfigError as exc:
            raise ConfigError(f"bad judge {part!r}: {exc}") from None
        judges[name] = part
    return judges


def _parse_vector(text: str, length: int, what: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected {length} comma-separated numbers") from None
    if len(values) != length:
        raise ConfigError(f"{what} {text!r} has {len(values)} numbers for {length} objectives")
    return np.array(values)


def run_front(args: argparse.Namespace) -> int:
    from moalign.data import load_prompts
    from moalign.eval import build_method, preference_grid, simplex_grid, sweep_methods, write_front_report
    from moalign.tasks import bundled_prompts

    specs, objectives, scorers, settings, base_model = _prepare(args)
    if args.preferences:
        grid = preference_grid([_parse_vector(p, len(objectives), "preference") for p in args.preferences.split(";")],
                               objectives)
    else:
        grid = simplex_grid(len(objectives), args.divisions)
    if args.prompts:
        prompts = load_prompts([args.prompts], args.prompt_adapter)[:args.n_prompts]
    else:
        prompts = bundled_prompts()[-(args.n_prompts or 24):]  # the end of the seeded order, which the demo never trains on
    methods = [build_method(n, k, objectives, grid, base_model=base_model, settings=settings) for n, k in specs]
    reference = None if args.reference_point is None else _parse_vector(args.reference_point, len(objectives), "reference point")
    points = sweep_methods(methods, prompts, scorers, args.cache or args.out / "cache", settings)
    write_front_report(points, objectives, args.out, reference=reference, resamples=args.resamples, seed=args.seed)
    print((args.out / "report.md").read_text())
    print(f"report: {(args.out / 'report.md').resolve()}")
    return 0


def run_winrate(args: argparse.Namespace) -> int:
    from moalign.data import load_prompt_set
    from moalign.eval import FrontPoint, build_method, golden_win_rates, sweep_methods, write_winrate_report
    from moalign.preference import normalize_preference

    specs, objectives, scorers, settings, base_model = _prepare(args)
    data = load_prompt_set(args.data, reference_field=args.reference_field, require_references=True).head(args.n_prompts)
    k = len(objectives)
    preference = (normalize_preference(_parse_vector(args.preference, k, "preference"), objectives)
                  if args.preference else np.full(k, 1.0 / k))
    methods = [build_method(n, kind, objectives, preference[None, :], base_model=base_model, settings=settings)
               for n, kind in specs]
    for method in methods:
        if len(method.preferences) > 1:  # a set of per-preference models: the one nearest the preference
            method.preferences = method.preferences[[int(np.argmin(np.abs(method.preferences - preference).sum(1)))]]
    points = sweep_methods(methods, data.prompts, scorers, args.cache or args.out / "cache", settings)
    golden = np.stack([s.reward(data.prompts, data.references) for s in scorers], axis=1)
    results = {}
    for name, (point,) in points.items():
        judged = FrontPoint(point.method, preference.tolist(), point.per_prompt)
        results[name] = golden_win_rates(judged, golden, objectives, tie_margin=args.tie_margin,
                                         resamples=args.resamples, seed=args.seed)
    write_winrate_report(results, objectives, args.out, details={
        "data": str(args.data), "prompts": len(data.prompts), "preference": preference.tolist(),
        "tie_margin": args.tie_margin, "generation": settings.to_dict(),
        "golden_mean_rewards": dict(zip(objectives, golden.mean(axis=0).tolist()))})
    print((args.out / "report.md").read_text())
    print(f"report: {(args.out / 'report.md').resolve()}")
    return 0
