"""Command line: ``torchvision-mix compare`` and ``torchvision-mix demo`` (also ``python -m torchvision_mix``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from ._compare import DATASET_DEFAULTS, DEFAULT_METHODS, METHODS, CommandError, parse_methods
from ._compare.report import ONE_SEED
from ._compare.training import DEFAULT_SEEDS


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


def _int_list(option: str, ranges: bool) -> Callable[[str], tuple[int, ...]]:
    """A comma-separated list of positive whole numbers (``ranges``: also ``A-B``), sorted, without repeats."""
    example = "1,2,4 or 1-15" if ranges else "30,60,150,300"

    def parse(text: str) -> tuple[int, ...]:
        values: list[int] = []
        for token in (t.strip() for t in text.split(",")):
            low, sep, high = token.partition("-") if ranges else (token, "", "")
            try:
                first, last = int(low), int(high if sep else low)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r}: expected positive whole numbers like {example}") from None
            if first <= 0:
                raise argparse.ArgumentTypeError(f"{text!r}: {first} is not positive")
            if last < first:
                raise argparse.ArgumentTypeError(f"{text!r}: the range {token} is empty")
            values.extend(range(first, last + 1))
        return tuple(sorted(set(values)))

    parse.__name__ = option
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
            f"Default: cluttered digits (offline), {', '.join(DEFAULT_METHODS)}, "
            f"{DEFAULT_SEEDS} seeds, {DATASET_DEFAULTS['digits']['epochs'][0]} epochs, one process per core."
        ),
    )
    compare.add_argument("--dataset", default="digits", choices=["digits", "cifar10", "folder"])
    compare.add_argument("--root", help="dataset directory (cifar10: where it is or is downloaded; folder: root)")
    compare.add_argument("--model", choices=["small", "resnet18"], help="default: small (digits), resnet18 (others)")
    compare.add_argument(
        "--epochs",
        type=_int_list("--epochs", ranges=False),
        help=f"training budget; default {DATASET_DEFAULTS['digits']['epochs'][0]} (digits), 30 (others); "
        "a list (30,60,150,300) is a budget sweep: a table per budget and accuracy against budget",
    )
    compare.add_argument("--batch-size", type=_positive(int), help="default: 64 (digits, folder), 128 (cifar10)")
    compare.add_argument(
        "--seeds", type=_positive(int), default=DEFAULT_SEEDS, help="paired runs per method (seeds 0, 1, ...)"
    )
    compare.add_argument("--lr", type=_positive(float), help="peak learning rate; default 0.05 (0.1 for cifar10)")
    compare.add_argument("--alpha", type=_positive(float), default=1.0, help="Beta(alpha, alpha) of the mixes")
    compare.add_argument("--grid-size", type=_positive(int), default=7)
    compare.add_argument(
        "--top-k",
        type=_int_list("--top-k", ranges=True),
        default=(6,),
        help="Attentive CutMix's cells N (default 6); a list (1,2,4 or 1-15) sweeps N, the paper's ablation",
    )
    compare.add_argument("--image-size", type=_positive(int), help="default: 28 (digits), 32 (others)")
    compare.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHODS)}; or cutmix-variants (the CutMix paper's ablation), all",
    )
    compare.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    compare.add_argument(
        "--jobs",
        type=_positive(int),
        default=os.cpu_count() or 1,
        help="trainings at once, each in its own process (default: the machine's cores); results do not depend on it",
    )
    compare.add_argument("--threads", type=_positive(int), default=1, help="torch threads per job (default 1)")
    compare.add_argument("--out", default="torchvision-mix-report", help="report folder")
    compare.add_argument(
        "--write",
        metavar="RST",
        help="also write the tables, figure and runs beside this page, as the _static/compare*.inc file it includes",
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
    from ._compare import data as data_module
    from ._compare.report import Load, check_write_target, load_average, markdown_table, section, tables, write_report
    from ._compare.training import Settings, check_settings, run_compare

    top_k = args.top_k
    methods = parse_methods(args.methods, sweep=len(top_k) > 1)
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
        jobs=args.jobs,
        grid_size=args.grid_size,
        top_k=top_k,
        alpha=args.alpha,
        image_size=pick("image_size"),
        methods=methods,
        augment=defaults["augment"],
        out=args.out,
    )
    check_settings(settings)
    settings.section = section(settings, args.methods)
    if args.write:
        check_write_target(args.write, settings.section)
    data = data_module.load_data(args.dataset, args.root, settings.image_size)
    budgets = ",".join(map(str, settings.epochs))
    print(
        f"{data.name}: {len(data.train_y)} train / {len(data.test_y)} test images, {data.num_classes} classes; "
        f"{len(settings.methods)} methods x {settings.seeds} seeds x {budgets} epochs on {settings.device}, "
        f"{settings.jobs} jobs of {settings.threads} torch threads",
        file=sys.stderr,
    )
    if settings.seeds < 2:
        print(f"note: {ONE_SEED}", file=sys.stderr)
    load = Load(load_average())
    report = run_compare(data, settings)
    load.end = load_average()
    for epochs, rows in tables(report):
        print(("" if epochs == settings.epochs[0] else "\n") + f"{epochs} epochs:\n" + markdown_table(rows))
    if settings.seeds < 2:
        print(f"\nnote: {ONE_SEED}")
    command = "torchvision-mix " + " ".join(shlex.quote(a) for a in argv)
    paths = write_report(args.out, data, settings, report, command, write=args.write, load=load)
    print(f"\n{report.seconds:.0f} s, {report.jobs} jobs{load}; report: {', '.join(paths)}")
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
