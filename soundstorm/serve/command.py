"""`soundstorm serve`: the HTTP API and web page on the bundled models, or any models folder.

    soundstorm serve                                  # http://127.0.0.1:8000 on models/demo
    soundstorm serve --models my-models --port 9000 --max-batch 16 --max-pending 64

The page is at /, the OpenAPI docs at /docs (schema at /openapi.json). One worker thread
generates; requests wait in a queue of --max-pending places and get 503 beyond it. Requests
that arrive together are decoded as one SoundStorm batch (--max-batch), each with its own
seeded random stream, so a request's audio does not depend on what it was batched with.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from soundstorm.precision import add_precision_argument
from soundstorm.serve.config import ServerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, help="models folder (default: the bundled models/demo, or $SOUNDSTORM_MODELS)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu")
    add_precision_argument(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    for field in dataclasses.fields(ServerConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default, help=f"(default {field.default})")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from soundstorm.serve.app import create_app
    from soundstorm.text.commands import models_folder
    from soundstorm.text.pipeline import SpeechPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    config = ServerConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerConfig)})
    models = models_folder(args.models)
    pipeline = SpeechPipeline.from_folder(models, device=args.device, precision=args.precision)
    print(f"serving {models} at http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(create_app(pipeline, config), host=args.host, port=args.port, log_level="warning")
    return 0
