"""``moalign serve``: an OpenAI-compatible server where every request chooses its own preference."""

from __future__ import annotations

import argparse
from pathlib import Path

#: command-line flag → ServeConfig field (flags left out keep ServeConfig's defaults)
_SETTINGS = {"host": "host", "port": "port", "api_key_env": "api_key_env", "max_batch_size": "max_batch_size",
             "batch_window_ms": "batch_window_ms", "max_queue": "max_queue", "timeout": "request_timeout_s",
             "max_prompt_tokens": "max_prompt_tokens", "max_tokens_limit": "max_tokens_limit",
             "default_max_tokens": "default_max_tokens"}


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve a HoE model, a rewarded soup of experts or one model over an OpenAI-style HTTP API",
        description="Serve one model whose every request picks its own trade-off (the 'preference' field). "
                    "Chat and text completions (streaming or not), /v1/models, /health, /metrics and a playground "
                    "at /.")
    serve.add_argument("model_dir", nargs="?", help="a HoE folder (moalign hoe build), a model or a PEFT adapter")
    serve.add_argument("--experts", help="serve per-objective LoRA experts as a rewarded soup: OBJECTIVE=DIR,...")
    serve.add_argument("--model", help="the base model (default: the one the HoE model or adapter records)")
    serve.add_argument("--name", help="the model id clients use (default: the folder's name)")
    serve.add_argument("--front", type=Path, help="an eval report (moalign eval front's report.json) for the "
                                                  "playground's Pareto front (default: MODEL_DIR/front/report.json)")
    serve.add_argument("--host", help="default 127.0.0.1 (loopback only)")
    serve.add_argument("--port", type=int, help="default 8000")
    serve.add_argument("--api-key-env", metavar="VAR",
                       help="require 'Authorization: Bearer KEY' on /v1, KEY read from this environment variable")
    serve.add_argument("--max-batch-size", type=int, help="requests decoded together (default 16)")
    serve.add_argument("--batch-window-ms", type=float,
                       help="how long a request waits for others to share its batch (default 10)")
    serve.add_argument("--max-queue", type=int, help="queued requests before 429 (default 256)")
    serve.add_argument("--timeout", type=float, help="seconds per request before 504 (default 120)")
    serve.add_argument("--max-prompt-tokens", type=int, help="default 2048")
    serve.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask for (default 1024)")
    serve.add_argument("--default-max-tokens", type=int, help="max_tokens when a request names none (default 256)")
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    serve.add_argument("--decoding", default="dynamic",
                       help="dynamic: a KV cache grown per token; static: preallocated; cuda_graph: the static step "
                            "captured once per batch and replayed (GPU; fastest for small models and batches)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import torch

    from moalign.cli.hoe_cmd import parse_experts
    from moalign.serve import ServeConfig, load_served_model, run_server

    config = ServeConfig(**{field: getattr(args, flag) for flag, field in _SETTINGS.items()
                            if getattr(args, flag) is not None})
    config.api_key()  # a missing key variable fails before the model loads
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    served = load_served_model(args.model_dir, experts=parse_experts(args.experts) if args.experts else None,
                               base_model=args.model, name=args.name, front=args.front, dtype=args.dtype,
                               device=device, decoding=args.decoding)
    print(f"serving {served.name!r} (objectives: {', '.join(served.objectives) or 'none'}) on "
          f"http://{config.host}:{config.port}/ (playground at /)", flush=True)
    run_server(served, config)
    return 0
