"""The comparison's data: cluttered digits (the default, offline), CIFAR-10 and image folders."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class CommandError(Exception):
    """A problem with the user's settings or data, reported as one line."""


@dataclass
class Data:
    train_x: Tensor  # (N, C, H, W) float in [0, 1]
    train_y: Tensor  # (N,) int64
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    name: str
    description: str = ""


def _resize(x: Tensor, size: int) -> Tensor:
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


# The default data set's construction; chosen for headroom and run time only (docs/comparison.rst).
CLUTTER = {"canvas": 28, "digit": 12, "pieces": 4, "piece": 4, "train": 600, "seed": 0}


def clutter_digits(digits: Tensor, canvas: int, pieces: int, piece: int, generator: torch.Generator) -> Tensor:
    """Place each digit ``(N, 1, d, d)`` at a random position on a black ``canvas``-pixel square and
    add ``pieces`` clutter squares of ``piece`` pixels cut at random from random digits of the
    same set (pixel-wise maximum, as strokes on black)."""
    n, _, size, _ = digits.shape
    flat = digits[:, 0]
    out = torch.zeros(n, canvas, canvas)
    every = torch.arange(n)[:, None, None]

    def window(rows_of: Tensor, corner: Tensor, side: int) -> tuple[Tensor, Tensor, Tensor]:
        """Indices of a ``side``-pixel square at ``corner`` (N, 2) in the images ``rows_of`` (N, 1, 1)."""
        span = torch.arange(side)
        return rows_of, (corner[:, 0, None] + span)[:, :, None], (corner[:, 1, None] + span)[:, None, :]

    out[window(every, torch.randint(0, canvas - size + 1, (n, 2), generator=generator), size)] = flat
    for _ in range(pieces):
        source = torch.randint(0, n, (n,), generator=generator)[:, None, None]
        cut = window(source, torch.randint(0, size - piece + 1, (n, 2), generator=generator), piece)
        put = window(every, torch.randint(0, canvas - piece + 1, (n, 2), generator=generator), piece)
        out[put] = torch.maximum(out[put], flat[cut])
    return out[:, None]


def load_cluttered_digits(
    canvas: int = CLUTTER["canvas"],
    digit: int = CLUTTER["digit"],
    pieces: int = CLUTTER["pieces"],
    piece: int = CLUTTER["piece"],
    train: int = CLUTTER["train"],
    seed: int = CLUTTER["seed"],
) -> Data:
    """Cluttered digits: scikit-learn's 1,797 bundled 8 x 8 digits, upsampled to ``digit`` pixels,
    placed at random on a ``canvas``-pixel square with ``pieces`` clutter squares cut from other
    digits of the same split (a small "cluttered MNIST", Mnih et al., 2014). The digits are split
    first (``train`` for training, the rest for testing), each split cluttered from its own digits.
    The construction is fixed (``seed``), independent of the runs' seeds."""
    if canvas < digit:
        raise CommandError(f"--image-size {canvas}: the cluttered digits need a canvas of at least {digit} pixels")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise CommandError(
            'the default dataset needs scikit-learn: pip install "torchvision-mix[demo]" (or pass --dataset)'
        ) from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=generator)
    x, y = _resize(x[order], digit), y[order]
    train_x = clutter_digits(x[:train], canvas, pieces, piece, generator)
    test_x = clutter_digits(x[train:], canvas, pieces, piece, generator)
    description = (
        f"scikit-learn's 8 x 8 digits upsampled to {digit} x {digit}, placed at random on a {canvas} x {canvas} "
        f"canvas with {pieces} clutter pieces of {piece} x {piece} cut from other digits of the same split"
    )
    return Data(train_x, y[:train], test_x, y[train:], 10, "cluttered digits", description)


def load_cifar10_data(root: str, image_size: int) -> Data:
    from torchvision.datasets import CIFAR10

    def to_tensors(train: bool) -> tuple[Tensor, Tensor]:
        try:
            ds = CIFAR10(root, train=train, download=True)
        except Exception as error:  # a download error, or a corrupt archive
            raise CommandError(
                f"could not load CIFAR-10 from {root!r} ({error}); on an offline machine put "
                "cifar-10-python.tar.gz (or its extracted folder) in that directory"
            ) from None
        x = torch.tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0
        return (_resize(x, image_size) if image_size != 32 else x), torch.tensor(ds.targets)

    train_x, train_y = to_tensors(True)
    test_x, test_y = to_tensors(False)
    return Data(train_x, train_y, test_x, test_y, 10, "CIFAR-10", "CIFAR-10's training and test sets")


def load_folder_data(root: str, image_size: int) -> Data:
    """An image folder (``root/class_name/image.ext``), split 75/25 per the fixed seed."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if not os.path.isdir(root):
        raise CommandError(f"no such folder: {root}")
    try:
        ds = ImageFolder(root)
    except (OSError, RuntimeError) as error:
        raise CommandError(f"{root} is not a readable image folder (root/class_name/image files): {error}") from None
    if len(ds) == 0:
        raise CommandError(f"the image folder {root} is empty")
    to_tensor = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((image_size, image_size), antialias=True)]
    )
    xs = []
    for path, _ in ds.samples:
        try:
            image = ds.loader(path)
        except Exception as error:
            raise CommandError(f"cannot read image {path}: {error}") from None
        xs.append(to_tensor(image))
    x = torch.stack(xs)
    y = torch.tensor(ds.targets)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    cut = max(1, len(y) * 3 // 4)
    if cut >= len(y):
        raise CommandError(f"the image folder {root} has too few images ({len(y)}) for a train/test split")
    return Data(x[:cut], y[:cut], x[cut:], y[cut:], len(ds.classes), f"image folder {root}", "75/25 split (fixed seed)")


def load_data(name: str, root: str | None, image_size: int) -> Data:
    if name == "digits":
        return load_cluttered_digits(canvas=image_size)
    if root is None:
        raise CommandError(f"--dataset {name} needs --root DIR")
    if name == "cifar10":
        return load_cifar10_data(root, image_size)
    if name == "folder":
        return load_folder_data(root, image_size)
    raise CommandError(f"unknown dataset {name!r}: choose digits, cifar10 or folder")
