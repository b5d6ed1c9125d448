"""Command line: ``torchvision-mix compare`` and ``torchvision-mix demo`` (also ``python -m torchvision_mix``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from ._compare import METHODS


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
        help="train a classifier with each mixing method over paired seeds; print the accuracy table",
        description=(
            "Train the same network with each method over paired seeds (same initial weights and data order "
            "per seed) and report mean ± std and the mean difference to no mixing with a 95 % t interval. "
            "Default: cluttered digits (offline), no mixing, MixUp, CutMix, Attentive CutMix and the "
            "CutMix/MixUp recipe, 5 seeds, 2 threads."
        ),
    )
    compare.add_argument("--dataset", default="digits", choices=["digits", "cifar10", "folder"])
    compare.add_argument("--root", help="dataset directory (cifar10: where it is or is downloaded; folder: root)")
    compare.add_argument("--model", choices=["small", "resnet18"], help="default: small (digits), resnet18 (others)")
    compare.add_argument("--epochs", type=_positive(int), help="default: 30")
    compare.add_argument("--batch-size", type=_positive(int), help="default: 64 (digits, folder), 128 (cifar10)")
    compare.add_argument("--seeds", type=_positive(int), default=5, help="paired runs per method (seeds 0, 1, ...)")
    compare.add_argument("--lr", type=_positive(float), help="peak learning rate; default 0.05 (0.1 for cifar10)")
    compare.add_argument("--alpha", type=_positive(float), default=1.0, help="Beta(alpha, alpha) of the mixes")
    compare.add_argument("--grid-size", type=_positive(int), default=7)
    compare.add_argument(
        "--top-k",
        default="6",
        help="Attentive CutMix's cells N; a list (1,2,...,15 or 1-15) sweeps N, the paper's ablation",
    )
    compare.add_argument("--image-size", type=_positive(int), help="default: 28 (digits), 32 (others)")
    compare.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHODS)}; or cutmix-variants (the CutMix paper's ablation), all",
    )
    compare.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    compare.add_argument("--threads", type=_positive(int), default=2, help="CPU threads for torch (default 2)")
    compare.add_argument("--no-intervals", action="store_true", help="no confidence intervals (allows a single seed)")
    compare.add_argument("--out", default="torchvision-mix-report", help="report folder")
    compare.add_argument(
        "--write",
        metavar="RST",
        help="also write the table and figure into this page, between its '.. begin-compare-<section>' lines",
    )

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
        DATASET_DEFAULTS,
        CommandError,
        Settings,
        check_settings,
        check_write_target,
        load_data,
        markdown_table,
        parse_methods,
        parse_top_k,
        probe_methods,
        run_compare,
        section,
        summarize,
        write_report,
    )

    top_k = parse_top_k(args.top_k)
    methods, default_methods = parse_methods(args.methods, sweep=len(top_k) > 1)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device}: no CUDA device is available")
    defaults = DATASET_DEFAULTS[args.dataset]

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    settings = Settings(
        dataset=args.dataset,
        model=pick("model"),
        epochs=pick("epochs"),
        batch_size=pick("batch_size"),
        seeds=args.seeds,
        lr=pick("lr"),
        device=args.device,
        threads=args.threads,
        grid_size=args.grid_size,
        top_k=top_k,
        alpha=args.alpha,
        image_size=pick("image_size"),
        methods=methods,
        default_methods=default_methods,
        intervals=not args.no_intervals,
        augment=defaults["augment"],
        out=args.out,
    )
    check_settings(settings)
    settings.section = section(settings, args.methods)
    if args.write:
        check_write_target(args.write, settings.section)
    skipped, classes = probe_methods(settings)
    for note in skipped:
        print(f"skipped: {note}", file=sys.stderr)
    torch.set_num_threads(settings.threads)
    data = load_data(args.dataset, args.root, settings.image_size)
    print(
        f"{data.name}: {len(data.train_y)} train / {len(data.test_y)} test images, {data.num_classes} classes; "
        f"{len(settings.methods)} methods x {settings.seeds} seeds x {settings.epochs} epochs on {settings.device}, "
        f"{torch.get_num_threads()} torch threads",
        file=sys.stderr,
    )
    report = run_compare(data, settings)
    report.skipped, report.classes = skipped, classes
    print(markdown_table(summarize(report, settings.intervals)))
    command = "torchvision-mix " + " ".join(shlex.quote(a) for a in argv)
    paths = write_report(args.out, data, settings, report, command, write=args.write)
    print(f"\n{report.seconds:.0f} s, {settings.threads} torch threads; report: {', '.join(paths)}")
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
