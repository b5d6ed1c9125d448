"""Command line: ``python -m torchvision_mix demo``."""

from __future__ import annotations

import argparse
import sys

import torch

from . import CutMix, masks


def _demo(args: argparse.Namespace) -> int:
    g = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.batch_size, 3, args.height, args.width, generator=g)
    labels = torch.arange(args.batch_size) % args.num_classes
    cutmix = CutMix(num_classes=args.num_classes, per_sample=args.per_sample, generator=g)
    mixed, soft = cutmix(images, labels)
    pasted = (mixed != images).any(dim=1)
    lam = masks.mask_fractions(pasted)
    print(f"CutMix(per_sample={args.per_sample}) on a batch of {args.batch_size} images {args.height}x{args.width}")
    for i in range(args.batch_size):
        partner = (i - 1) % args.batch_size
        print(f"\nsample {i}: {int(pasted[i].sum())} of {args.height * args.width} pixels from sample {partner}")
        print(f"  lam = {float(lam[i]):.4f}; label row: {[round(v, 4) for v in soft[i].tolist()]}")
        for row in pasted[i].tolist():
            print("  " + "".join("#" if v else "." for v in row))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchvision-mix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="mix a small random batch and show the pasted masks and labels")
    demo.add_argument("--batch-size", type=int, default=3)
    demo.add_argument("--height", type=int, default=8)
    demo.add_argument("--width", type=int, default=16)
    demo.add_argument("--num-classes", type=int, default=3)
    demo.add_argument("--per-sample", action="store_true")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
