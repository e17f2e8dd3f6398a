"""``wsolbench run``: train and evaluate one method x backbone x dataset, print its table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wsolbench import config as configuration
from wsolbench.progress import LOG_FORMATS, Progress
from wsolbench.registry import default_registry


def add_format_option(parser: argparse.ArgumentParser) -> None:
    """``--format``: how a command prints its result table (:data:`wsolbench.tables.FORMATS`)."""
    from wsolbench.tables import FORMATS

    parser.add_argument("--format", default="github", choices=FORMATS, help="table format (default: github)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``sweep``: config sources and runtime settings."""
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML config file (sections: method, backbone, head, dataset, train, eval)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, dotted, value parsed as YAML (repeatable), e.g. --set method.k=4",
    )
    parser.add_argument("--device", choices=None, help="auto (CUDA when present, default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", default=None, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="directory of run folders (default: runs/)")
    parser.add_argument("--force", action="store_true", help="retrain even if the run's results or checkpoint exist")
    parser.add_argument("--quiet", action="store_true", help="print only the result table and errors")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="progress: a bar on a terminal, plain lines otherwise (auto, default), or json lines",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train and evaluate one combination",
        description="Train and evaluate one method x backbone x dataset. Settings merge as "
        "defaults <- dataset preset <- --config <- --set <- flags. Without --dataset the embedded "
        "synthetic dataset is used with its CPU-sized preset. Evaluation settings (eval.*) and the data "
        "folder are not part of a run's identity: changing them reuses the trained model and only "
        "re-evaluates (or predicts a newly asked split, e.g. --set eval.cam_threshold=val).",
    )
    parser.add_argument("--method", help="method name (default: cam; see `wsolbench list methods`)")
    parser.add_argument("--backbone", help="backbone name (default: vgg16; see `wsolbench list backbones`)")
    parser.add_argument("--head", help="head name (default: wsol)")
    parser.add_argument("--dataset", help="dataset name (default: synthetic)")
    parser.add_argument("--data-root", help="root folder of a real dataset (dataset.root)")
    parser.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    parser.add_argument("--batch-size", type=int, help="training batch size over all processes (train.batch_size)")
    parser.add_argument("--lr", type=float, help="backbone learning rate; heads use lr x train.head_lr_mult (train.lr)")
    parser.add_argument("--image-size", type=int, help="image size of the synthetic dataset or crop size of real ones")
    parser.add_argument("--seed", type=int, help="seed of data order, initialisation and augmentation (default 0)")
    parser.add_argument("--pretrained", help="backbone weights: false, true (download) or a local checkpoint path")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    add_run_options(parser)
    parser.set_defaults(handler=run)


def parse_pretrained(value: str | None) -> bool | str | None:
    """``--pretrained`` text -> False, True or a path."""
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("false", "no", "0"):
        return False
    if lowered in ("true", "yes", "1"):
        return True
    return value


def flag_overrides(args: argparse.Namespace, image_size_key: str) -> dict[str, Any]:
    """Dotted config keys set by dedicated flags (None = not given)."""
    return {
        "method.name": args.method,
        "backbone.name": args.backbone,
        "head.name": args.head,
        "dataset.name": args.dataset,
        "dataset.root": args.data_root,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        image_size_key: args.image_size,
        "seed": args.seed,
        "device": args.device,
        "amp": args.amp,
        "backbone.pretrained": parse_pretrained(args.pretrained),
    }


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    dataset = args.dataset or configuration.DEFAULTS["dataset"]["name"]
    image_size_key = (
        "dataset.image_size" if "image_size" in registry.get("datasets", dataset).options else "dataset.crop"
    )
    config = configuration.resolve(
        registry, file=args.config, sets=args.sets, flags=flag_overrides(args, image_size_key)
    )
    from wsolbench.results import render_runs
    from wsolbench.runner import execute

    progress = Progress(args.log_format, quiet=args.quiet)
    result = execute(config, registry, out=args.out, resume=args.resume, force=args.force, progress=progress)
    if result.metrics:
        print(render_runs([result.run_dir]))
    return 0
