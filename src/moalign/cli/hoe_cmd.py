"""``moalign hoe build|generate|export|train-routers``: build a HoE model from per-objective experts, answer at a
preference, export one preference as a PEFT LoRA, and train router experts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moalign.cli.train_cmd import add_training_parser


def register(commands: argparse._SubParsersAction) -> None:
    hoe = commands.add_parser("hoe", help="HoE: one model, any preference per request")
    sub = hoe.add_subparsers(dest="hoe_command", required=True, metavar="SUBCOMMAND")

    build = sub.add_parser("build", help="build a HoE model from one expert per objective")
    build.add_argument("--experts", required=True,
                       help="OBJECTIVE=DIR,... (a PEFT LoRA adapter or a training output folder, or a full fine-tuned "
                            "model, compressed by task-SVD)")
    build.add_argument("--model", help="the base model (default: the one the first adapter records)")
    build.add_argument("--anchors", default="centre",
                       help="anchor preferences for merged experts: 'centre' (default), 'none', or 'w,w;w,w'")
    build.add_argument("--merge", default="ties", choices=["ties", "linear"], help="how anchor experts are merged")
    build.add_argument("--density", type=float, default=0.2, help="TIES: fraction of each task vector kept")
    build.add_argument("--rank", type=int, help="task-SVD rank (default: 256 for full models, the experts' for anchors)")
    build.add_argument("--energy", type=float, help="task-SVD: keep this fraction of each update's energy instead")
    build.add_argument("--out", type=Path, required=True)
    build.set_defaults(handler=run_build)

    generate = sub.add_parser("generate", help="answer prompts at a preference")
    generate.add_argument("model_dir", type=Path)
    generate.add_argument("prompts", nargs="+")
    generate.add_argument("--preference", help="w,w,... in objective order or name=w,... (default: uniform)")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.add_argument("--temperature", type=float, default=0.0)
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--method", choices=["hoe", "mod"], default="hoe",
                          help="hoe (one mixed forward) or mod (decoding-time mixing of the experts)")
    generate.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    generate.add_argument("--decoding", default="dynamic",
                          help="dynamic: a KV cache grown per token; static: preallocated; cuda_graph: the static "
                               "step captured once per batch and replayed (GPU)")
    generate.set_defaults(handler=run_generate)

    export = sub.add_parser("export", help="save the model at one preference as a plain PEFT LoRA adapter")
    export.add_argument("model_dir", type=Path)
    export.add_argument("--preference", required=True)
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(handler=run_export)

    add_training_parser(sub, "train-routers", "routers", "train a router expert by PPO on smooth Tchebycheff")


def parse_preference(text: str | None):
    """``"0.7,0.3"`` → a list; ``"helpful=0.7,harmless=0.3"`` → a mapping (checked by the model)."""
    from moalign.preference import PreferenceError

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            return {name.strip(): float(value) for name, value in (p.split("=", 1) for p in parts)}
        return [float(p) for p in parts]
    except ValueError:
        raise PreferenceError(f"cannot read preference {text!r}; use w,w,... or name=w,...") from None


def checked_preference(model_dir: Path, text: str | None):
    """``--preference`` read and checked against the objectives in ``model_dir``'s manifest, before any weights load,
    so a mistyped preference fails in a moment rather than after the model is read."""
    from moalign.hoe.config import HoEConfig
    from moalign.preference import normalize_preference

    preference = parse_preference(text)
    if preference is not None:
        normalize_preference(preference, HoEConfig.load(model_dir).objectives)
    return preference


def parse_experts(text: str) -> list[tuple[str, Path]]:
    """``"helpful=DIR,harmless=DIR"`` → ``[(objective, model folder), ...]`` (a training output's ``final/``)."""
    from moalign.eval.methods import resolve_model_dir
    from moalign.hoe import HoEError

    experts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        if not sep or not name or not path:
            raise HoEError(f"bad expert {part!r}; use OBJECTIVE=DIR")
        experts.append((name, resolve_model_dir(path)))
    if not experts:
        raise HoEError("no experts given; use OBJECTIVE=DIR,...")
    return experts


def run_build(args: argparse.Namespace) -> int:
    from moalign.eval.methods import recorded_base_model
    from moalign.hoe import HoEError
    from moalign.hoe.build import build_hoe

    experts = parse_experts(args.experts)
    base = args.model or recorded_base_model(experts[0][1])
    if base is None:
        raise HoEError("cannot tell the base model from the experts; pass --model")
    if args.anchors == "none":
        anchors = []
    elif args.anchors == "centre":
        anchors = None
    else:
        anchors = [[float(w) for w in point.split(",")] for point in args.anchors.split(";")]
    model, report = build_hoe(experts, base, anchors=anchors, merge=args.merge, density=args.density, rank=args.rank,
                              energy=args.energy)
    model.save_pretrained(args.out)
    (args.out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, entry in {**report["experts"], **report["anchors"]}.items():
        print(f"{name}: {entry['modules']} modules, rank {entry['rank_min']}-{entry['rank_max']}, "
              f"relative error mean {entry['relative_error_mean']:.4f} max {entry['relative_error_max']:.4f}")
    print(f"saved: {args.out} (objectives {model.objectives}, {len(model.config.experts)} experts)")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from moalign.hoe import HoEModel
    from moalign.hoe.mod import mod_generate
    from moalign.models.static_decoding import check_decoding

    preference = checked_preference(args.model_dir, args.preference)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_decoding(args.decoding, device)
    model = HoEModel.from_pretrained(args.model_dir, device=device)
    settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                    decoding=args.decoding)
    if args.method == "mod":
        answers = mod_generate(model, args.prompts, preference, **settings)
    else:
        answers = model.generate(args.prompts, preference, **settings)
    for answer in answers:
        print(answer)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from moalign.hoe import HoEModel

    preference = checked_preference(args.model_dir, args.preference)
    model = HoEModel.from_pretrained(args.model_dir)
    print(f"saved: {model.export_lora(preference, args.out)}")
    return 0
