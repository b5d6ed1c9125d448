"""Command line: ``torchvision-mix compare`` and ``torchvision-mix demo`` (also ``python -m torchvision_mix``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One clear line and exit code 2, instead of the usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    name = getattr(kind, "__name__", "number")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {name}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {name}, got {text!r}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torchvision-mix", description="Exact, fast CutMix and Attentive CutMix.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    compare = sub.add_parser(
        "compare",
        help="train a small classifier with no mixing, MixUp, CutMix and Attentive CutMix; print the accuracy table",
    )
    compare.add_argument("--dataset", default="digits", choices=["digits", "cifar10", "folder"])
    compare.add_argument("--root", help="dataset directory (cifar10: where it is or is downloaded; folder: root)")
    compare.add_argument("--epochs", type=_positive(int), default=30)
    compare.add_argument("--batch-size", type=_positive(int), default=64)
    compare.add_argument("--seeds", type=_positive(int), default=3, help="runs per method (seeds 0, 1, ...)")
    compare.add_argument("--lr", type=_positive(float), default=0.05)
    compare.add_argument("--alpha", type=_positive(float), default=1.0, help="Beta(alpha, alpha) for MixUp/CutMix")
    compare.add_argument("--grid-size", type=_positive(int), default=7)
    compare.add_argument("--top-k", type=_positive(int), default=6)
    compare.add_argument("--image-size", type=_positive(int), default=None, help="default: 28 (digits), 32 (others)")
    compare.add_argument("--methods", default="none,mixup,cutmix,attentive", help="comma-separated subset")
    compare.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    compare.add_argument("--threads", type=_positive(int), default=None, help="CPU threads for torch")
    compare.add_argument("--out", default="torchvision-mix-report", help="report folder")

    demo = sub.add_parser("demo", help="write a PNG grid of originals, CutMix and Attentive CutMix results")
    demo.add_argument("images", nargs="*", help="image files (default: scikit-image's sample photos)")
    demo.add_argument("--out", default="torchvision-mix-demo.png")
    demo.add_argument("--size", type=_positive(int), default=224)
    demo.add_argument("--grid-size", type=_positive(int), default=7)
    demo.add_argument("--top-k", type=_positive(int), default=6)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--weights-path", help="a local ResNet-50 state dict (for offline machines)")
    return parser


def _compare(args: argparse.Namespace, argv: list[str]) -> int:
    from ._compare import (
        METHODS,
        CommandError,
        Settings,
        check_settings,
        load_data,
        markdown_table,
        run_compare,
        write_report,
    )

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise CommandError(f"unknown method(s) {unknown or methods}: choose from {', '.join(METHODS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device}: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    image_size = args.image_size or (28 if args.dataset == "digits" else 32)
    settings = Settings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seeds=args.seeds,
        lr=args.lr,
        device=args.device,
        grid_size=args.grid_size,
        top_k=args.top_k,
        alpha=args.alpha,
        image_size=image_size,
        methods=methods,
        out=args.out,
    )
    check_settings(settings)
    data = load_data(args.dataset, args.root, image_size)
    print(
        f"{data.name}: {len(data.train_y)} train / {len(data.test_y)} test images, {data.num_classes} classes; "
        f"{len(methods)} methods x {args.seeds} seeds x {args.epochs} epochs on {args.device}",
        file=sys.stderr,
    )
    report = run_compare(data, settings)
    print(markdown_table(report["results"]))
    command = "torchvision-mix " + " ".join(shlex.quote(a) for a in argv)
    paths = write_report(args.out, data, settings, report, command)
    print(f"\nreport: {', '.join(paths)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import make_demo

    path = make_demo(
        args.images,
        args.out,
        size=args.size,
        grid_size=args.grid_size,
        top_k=args.top_k,
        seed=args.seed,
        weights_path=args.weights_path,
    )
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ._compare import CommandError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        return _compare(args, argv) if args.command == "compare" else _demo(args)
    except CommandError as error:
        print(f"torchvision-mix {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchvision-mix {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
