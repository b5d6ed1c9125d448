"""``torchvision-mix compare``: a miniature of the papers' comparison tables, with paired statistics.

Every method trains the same network over the same seeds. For a given seed every method starts
from the same initial weights and sees the same data order (both fingerprinted in the CSV), so
the seeds are paired: the table gives each method's mean ± std and its mean difference to no
mixing with a 95 % t interval over the paired seeds.

The default data set is *cluttered digits*, built offline from scikit-learn's bundled digits (see
:func:`load_cluttered_digits`). Attentive CutMix uses a "pretrained" feature extractor: the same
network trained once without mixing on the training split.

Methods are one registry, :data:`METHODS`: name → (title, builder). A builder makes the transform
from a :class:`MixContext`; it imports its class from the package's top level when called, so a
method whose class this version lacks fails only when it is chosen.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


class CommandError(Exception):
    """A problem with the user's settings or data, reported as one line."""


class MethodUnavailable(CommandError):
    """A registered method whose class (or option) this version of the package does not have."""


# ------------------------------------------------------------------------------------------------
# Methods: one registry, name -> (title, builder)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixContext:
    """What a builder may use to make its transform (one context per method and seed)."""

    num_classes: int
    generator: torch.Generator
    extractor: Callable[[Tensor], Any] | None = None
    alpha: float = 1.0
    grid_size: int = 7
    top_k: int = 6
    image_size: int = 28
    extractor_stride: int = 4  # input pixels per feature-map cell: 4 for SmallCNN, 8 for the ResNet-18


class _Missing(Exception):
    """Raised by a builder: the package lacks ``what``."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _public(name: str) -> Any:
    """``from torchvision_mix import <name>``, resolved when called (an ImportError when absent)."""
    package = importlib.import_module("torchvision_mix")
    try:
        return getattr(package, name)
    except AttributeError:
        raise ImportError(f"cannot import name {name!r} from 'torchvision_mix'") from None


def _make(name: str, *args: Any, **kwargs: Any) -> Any:
    """``torchvision_mix.<name>(*args, **kwargs)``, or :class:`_Missing` if the class or an option is absent."""
    try:
        cls = _public(name)
    except ImportError:
        raise _Missing(f"torchvision_mix.{name}") from None
    try:
        return cls(*args, **kwargs)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        options = ", ".join(f"{key}=..." for key in kwargs if f"'{key}'" in str(error)) or "..."
        raise _Missing(f"torchvision_mix.{name}({options})") from None


def _common(ctx: MixContext) -> dict[str, Any]:
    return {"num_classes": ctx.num_classes, "generator": ctx.generator}


class LinearSchedule:
    """Scheduled CutMix: before each epoch the training loop calls ``set_epoch``, which sets the
    wrapped transform's ``p`` to ``epoch / epochs`` (0 at the start, rising linearly towards 1)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.transform.p = epoch / epochs

    def __call__(self, *inputs: Any) -> Any:
        return self.transform(*inputs)


def _none(ctx: MixContext) -> None:
    return None


def _mixup(ctx: MixContext) -> Any:
    return _make("MixUp", alpha=ctx.alpha, **_common(ctx))


def _cutmix(ctx: MixContext) -> Any:
    return _make("CutMix", alpha=ctx.alpha, **_common(ctx))


def _attentive(ctx: MixContext) -> Any:
    return _make(
        "AttentiveCutMix",
        feature_extractor=ctx.extractor,
        # The attention is computed on a copy resized so that the extractor's map is at least the grid.
        extractor_size=max(ctx.image_size, ctx.extractor_stride * ctx.grid_size),
        grid_size=ctx.grid_size,
        top_k=ctx.top_k,
        **_common(ctx),
    )


def _recipe(ctx: MixContext) -> Any:
    children = [_make("CutMix", alpha=1.0), _make("MixUp", alpha=0.8)]
    return _make("RandomMix", children, p=[0.5, 0.5], per_sample=True, **_common(ctx))


def _saliencymix(ctx: MixContext) -> Any:
    return _make("SaliencyMix", alpha=ctx.alpha, **_common(ctx))


def _fmix(ctx: MixContext) -> Any:
    return _make("FMix", alpha=ctx.alpha, decay_power=3.0, **_common(ctx))


def _gridmix(ctx: MixContext) -> Any:
    return _make("GridMix", **_common(ctx))


def _cutmix_gaussian(ctx: MixContext) -> Any:
    return _make("CutMix", alpha=ctx.alpha, center="gaussian", **_common(ctx))


def _cutmix_fixed(ctx: MixContext) -> Any:
    # The paper's fixed 16 x 16 box on 32 x 32 CIFAR images: half the side, scaled to these images.
    side = max(1, round(ctx.image_size * 16 / 32))
    return _make("CutMix", box_size=side, **_common(ctx))


def _cutmix_scheduled(ctx: MixContext) -> Any:
    return LinearSchedule(_make("CutMix", alpha=ctx.alpha, p=0.0, **_common(ctx)))


def _cutmix_onehot(ctx: MixContext) -> Any:
    return _make("CutMix", alpha=ctx.alpha, label_rule="one_hot", **_common(ctx))


def _cutmix_complete(ctx: MixContext) -> Any:
    return _make("CutMix", alpha=ctx.alpha, label_rule="complete", **_common(ctx))


Builder = Callable[[MixContext], Any]

METHODS: dict[str, tuple[str, Builder]] = {
    "none": ("no mixing", _none),
    "mixup": ("MixUp", _mixup),
    "cutmix": ("CutMix", _cutmix),
    "attentive": ("Attentive CutMix", _attentive),
    "recipe": ("CutMix/MixUp recipe", _recipe),
    "saliencymix": ("SaliencyMix", _saliencymix),
    "fmix": ("FMix", _fmix),
    "gridmix": ("GridMix", _gridmix),
    "cutmix-gaussian": ("CutMix, Gaussian centre", _cutmix_gaussian),
    "cutmix-fixed": ("CutMix, fixed-size box", _cutmix_fixed),
    "cutmix-scheduled": ("CutMix, scheduled", _cutmix_scheduled),
    "cutmix-onehot": ("CutMix, one-hot label", _cutmix_onehot),
    "cutmix-complete": ("CutMix, complete label", _cutmix_complete),
}

DEFAULT_METHODS = ("none", "mixup", "cutmix", "attentive", "recipe")
PRESETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_METHODS,
    "cutmix-variants": (
        "none",
        "cutmix",
        "cutmix-gaussian",
        "cutmix-fixed",
        "cutmix-scheduled",
        "cutmix-onehot",
        "cutmix-complete",
    ),
    "all": tuple(METHODS),
}

# The seed papers' CIFAR-10 ResNet-18 row (Walawalkar et al., 2020; Attentive CutMix with N = 6 cells).
PAPER_CIFAR10_RESNET18 = {"none": 84.67, "mixup": 88.52, "cutmix": 87.92, "attentive": 88.94}
PAPER_TOP_K = 6


def build_mix(method: str, ctx: MixContext) -> Any:
    """The transform of ``method`` (``None`` for no mixing), or a one-line :class:`MethodUnavailable`."""
    try:
        return METHODS[method][1](ctx)
    except _Missing as missing:
        raise MethodUnavailable(f"method {method} needs {missing.what}, not available in this version") from None


def parse_methods(text: str | None, sweep: bool) -> tuple[tuple[str, ...], bool]:
    """The methods to run, and whether the list was the default (whose missing classes are skipped)."""
    if text is None:
        return (("none", "attentive") if sweep else DEFAULT_METHODS), True
    methods: list[str] = []
    for item in (m.strip() for m in text.split(",")):
        if not item:
            continue
        for method in PRESETS.get(item, (item,)):
            if method not in METHODS:
                raise CommandError(
                    f"unknown method {method!r}: choose from {', '.join(METHODS)} (or {', '.join(PRESETS)})"
                )
            if method not in methods:
                methods.append(method)
    if not methods:
        raise CommandError(f"--methods {text!r} names no method: choose from {', '.join(METHODS)}")
    return tuple(methods), False


def parse_top_k(text: str) -> tuple[int, ...]:
    """``6``, ``1,2,4,8``, ``1-15`` or ``1,2,...,15`` (an arithmetic run), sorted, without repeats."""
    values: list[int] = []
    tokens = [t.strip() for t in text.split(",") if t.strip()]

    def number(token: str) -> int:
        try:
            return int(token)
        except ValueError:
            raise CommandError(f"--top-k {text!r}: expected whole numbers like 6, 1,2,4 or 1-15") from None

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("...", "…"):
            if len(values) < 2 or i + 1 >= len(tokens):
                raise CommandError(f"--top-k {text!r}: '...' needs two values before it and one after")
            step, last = values[-1] - values[-2], number(tokens[i + 1])
            if step <= 0 or (last - values[-1]) % step:
                raise CommandError(f"--top-k {text!r}: '...' must continue an increasing run up to its last value")
            values.extend(range(values[-1] + step, last + 1, step))
            i += 2
            continue
        if "-" in token[1:]:
            low, high = (number(part) for part in token.split("-", 1))
            if high < low:
                raise CommandError(f"--top-k {text!r}: the range {token} is empty")
            values.extend(range(low, high + 1))
        else:
            values.append(number(token))
        i += 1
    if not values:
        raise CommandError(f"--top-k {text!r} names no value")
    return tuple(sorted(set(values)))


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    dataset: str = "digits"
    model: str = "small"
    epochs: int = 30
    batch_size: int = 64
    seeds: int = 5
    lr: float = 0.05
    device: str = "cpu"
    threads: int = 2
    grid_size: int = 7
    top_k: tuple[int, ...] = (6,)
    alpha: float = 1.0
    image_size: int = 28
    methods: tuple[str, ...] = DEFAULT_METHODS
    default_methods: bool = False  # the methods were not chosen: skip those this version lacks
    intervals: bool = True
    augment: bool = False  # random 4-pixel shifts and horizontal flips (CIFAR-10 and folders)
    out: str = "torchvision-mix-report"
    section: str = "main"  # the part of the docs page that --write regenerates

    @property
    def sweep(self) -> bool:
        return len(self.top_k) > 1


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"model": "small", "epochs": 30, "batch_size": 64, "lr": 0.05, "image_size": 28, "augment": False},
    "cifar10": {"model": "resnet18", "epochs": 30, "batch_size": 128, "lr": 0.1, "image_size": 32, "augment": True},
    "folder": {"model": "resnet18", "epochs": 30, "batch_size": 64, "lr": 0.05, "image_size": 32, "augment": True},
}


@dataclass(frozen=True)
class Arm:
    """One row of the table: a method, and for Attentive CutMix its number of cells."""

    key: str
    method: str
    title: str
    top_k: int


def arms_of(settings: Settings) -> list[Arm]:
    arms = []
    for method in settings.methods:
        title = METHODS[method][0]
        if method == "attentive" and settings.sweep:
            arms += [Arm(f"attentive-k{k}", method, f"{title}, N = {k}", k) for k in settings.top_k]
        else:
            arms.append(Arm(method, method, title, settings.top_k[0]))
    return arms


def check_settings(settings: Settings) -> None:
    """Settings that are impossible whatever the data; checked before anything is loaded."""
    cells = settings.grid_size**2
    outside = [k for k in settings.top_k if not 1 <= k <= cells]
    if outside:
        raise CommandError(
            f"--top-k {outside[0]} is outside [1, {cells}], the {settings.grid_size}x{settings.grid_size} grid's cells"
        )
    if settings.grid_size > settings.image_size:
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({settings.image_size}px)")
    if settings.intervals and settings.seeds < 2:
        raise CommandError(
            f"--seeds {settings.seeds}: the 95 % confidence intervals need at least 2 paired seeds "
            "(pass --seeds 2 or more, or --no-intervals)"
        )
    if settings.sweep and "attentive" not in settings.methods:
        raise CommandError("a list of --top-k values sweeps Attentive CutMix: add attentive to --methods")


def probe_methods(settings: Settings, num_classes: int = 10) -> tuple[list[str], dict[str, str]]:
    """Build every method once, before any data is loaded; drop (default list) or refuse
    (chosen list) those this version lacks. Returns the skip notes and each method's class."""
    skipped: list[str] = []
    classes: dict[str, str] = {}
    kept = []
    for method in settings.methods:
        ctx = MixContext(
            num_classes=num_classes,
            generator=torch.Generator(),
            extractor=nn.Identity(),
            alpha=settings.alpha,
            grid_size=settings.grid_size,
            top_k=settings.top_k[0],
            image_size=settings.image_size,
        )
        try:
            mix = build_mix(method, ctx)
        except MethodUnavailable as error:
            if not settings.default_methods:
                raise
            skipped.append(str(error))
            continue
        kept.append(method)
        inner = mix.transform if isinstance(mix, LinearSchedule) else mix
        classes[method] = "-" if mix is None else f"{type(inner).__module__.split('.')[0]}.{type(inner).__name__}"
    settings.methods = tuple(kept)
    return skipped, classes


# ------------------------------------------------------------------------------------------------
# Models and training
# ------------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Three conv stages (28x28 in → a 7x7 final feature map, like a ResNet's at 224), then a linear head."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *stage(in_channels, 16), nn.MaxPool2d(2), *stage(16, 32), nn.MaxPool2d(2), *stage(32, 64)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def build_model(name: str, in_channels: int, num_classes: int, seed: int) -> nn.Module:
    """The network for ``seed``: the same initial weights for every method given this seed."""
    torch.manual_seed(seed)
    if name == "small":
        return SmallCNN(in_channels, num_classes)
    from torchvision.models import resnet18

    # torchvision's ResNet-18 with the usual small-image stem (a 3x3 stride-1 conv, no max-pool).
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def trunk(model: nn.Module) -> nn.Module:
    """The convolutional part of a trained model: the feature extractor for Attentive CutMix."""
    if isinstance(model, SmallCNN):
        return model.features
    m: Any = model
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)


def fingerprint(tensors: Sequence[Tensor]) -> str:
    """SHA-256 (12 hex digits) of the tensors' bytes: equal fingerprints, equal tensors."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def shift_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per sample: a random shift of up to 4 pixels (zero padding) and a horizontal flip with p=0.5."""
    b, _, h, w = x.shape
    pad = 4
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


class Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = max(1, total), 0, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / self.total)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} epochs  {label}  eta {eta:4.0f}s"
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        elif self.done == self.total or self.done % max(1, self.total // 20) == 0:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


@dataclass
class Trained:
    model: nn.Module
    init: str  # fingerprint of the initial weights
    order: str  # fingerprint of the data order (every epoch's permutation)
    loss: float  # mean training loss of the last epoch


def train(data: Data, settings: Settings, seed: int, mix: Any, progress: Progress, label: str) -> Trained:
    """Train from ``seed``'s initial weights, in ``seed``'s data order, mixing with ``mix`` (or not)."""
    device = torch.device(settings.device)
    model = build_model(settings.model, data.train_x.shape[1], data.num_classes, seed).to(device)
    init = fingerprint(list(model.state_dict().values()))
    steps_per_epoch = math.ceil(len(data.train_y) / settings.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch
    )
    order_gen = torch.Generator().manual_seed(seed)
    order_digest = hashlib.sha256()
    x_all, y_all = data.train_x.to(device), data.train_y.to(device)
    loss_sum = torch.zeros((), device=device)
    for epoch in range(settings.epochs):
        if isinstance(mix, LinearSchedule):
            mix.set_epoch(epoch, settings.epochs)
        model.train()
        order = torch.randperm(len(y_all), generator=order_gen)
        order_digest.update(order.numpy().tobytes())
        order = order.to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(order), settings.batch_size):
            index = order[start : start + settings.batch_size]
            x, y = x_all[index], y_all[index]
            if settings.augment:
                x = shift_flip(x, order_gen)
            if mix is not None and len(index) > 1:
                x, y = mix(x, y)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(index)
        progress.step(f"{label} epoch {epoch + 1}/{settings.epochs}")
    return Trained(model, init, order_digest.hexdigest()[:12], float(loss_sum) / len(y_all))


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, device: str) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data.test_y), 512):
        x = data.test_x[start : start + 512].to(device)
        y = data.test_y[start : start + 512].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(data.test_y)


@dataclass
class Run:
    arm: Arm
    seed: int
    accuracy: float
    loss: float
    init: str
    order: str
    seconds: float


@dataclass
class Report:
    arms: list[Arm]
    runs: list[Run]
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the process's CPU time (all threads)
    extractor: nn.Module | None = None
    extractor_accuracy: float | None = None
    extractor_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)

    def accuracies(self, key: str) -> list[float]:
        return [r.accuracy for r in sorted(self.runs, key=lambda r: r.seed) if r.arm.key == key]


EXTRACTOR_SEED = 12_345


def mix_context(settings: Settings, arm: Arm, num_classes: int, extractor: Any, seed: int) -> MixContext:
    return MixContext(
        num_classes=num_classes,
        generator=torch.Generator().manual_seed(10_000 + seed),
        extractor=extractor,
        alpha=settings.alpha,
        grid_size=settings.grid_size,
        top_k=arm.top_k,
        image_size=settings.image_size,
        extractor_stride=4 if settings.model == "small" else 8,
    )


def run_compare(data: Data, settings: Settings) -> Report:
    """Train every arm on every seed (seed by seed, so an interrupted run stays paired)."""
    check_settings(settings)
    h, w = data.train_x.shape[-2:]
    if settings.grid_size > min(h, w):
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({h}x{w})")
    if len(data.train_y) < 2 or len(data.test_y) < 1:
        raise CommandError("the dataset is empty or too small to train and test on")
    if settings.device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    arms = arms_of(settings)
    report = Report(arms, [])
    need_extractor = "attentive" in settings.methods
    progress = Progress(settings.epochs * (len(arms) * settings.seeds + int(need_extractor)))
    start, cpu_start = time.perf_counter(), time.process_time()
    if need_extractor:
        pretrained = train(data, settings, EXTRACTOR_SEED, None, progress, "pretraining the extractor")
        report.extractor = trunk(pretrained.model).eval().requires_grad_(False)
        report.extractor_accuracy = accuracy(pretrained.model, data, settings.device)
        report.extractor_seconds = time.perf_counter() - start
    for seed in range(settings.seeds):
        for arm in arms:
            began = time.perf_counter()
            mix = build_mix(arm.method, mix_context(settings, arm, data.num_classes, report.extractor, seed))
            trained = train(data, settings, seed, mix, progress, f"{arm.title} seed {seed}")
            acc = accuracy(trained.model, data, settings.device)
            report.runs.append(
                Run(arm, seed, acc, trained.loss, trained.init, trained.order, time.perf_counter() - began)
            )
    progress.close()
    report.seconds = time.perf_counter() - start
    report.cpu_seconds = time.process_time() - cpu_start
    return report


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (integer) degrees of freedom, in closed form
    (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, math.cos(theta)
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + s * total)
    total, term = 0.0, 1.0
    for j in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * j - 1) / (2 * j)
    return s * total


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| <= t) = ``level`` (two-sided): 2.776 for a 95 % interval with 4 degrees of freedom."""
    if df < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need df >= 1 and 0 < level < 1, got df={df}, level={level}")
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, df) < level:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if _t_two_sided_mass(mid, df) < level:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def paired_difference(values: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of ``values[i] - baseline[i]`` over the paired seeds, and the half-width of its t interval."""
    if len(values) != len(baseline) or len(values) < 2:
        raise ValueError("a paired interval needs the same seeds on both sides, at least 2")
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    half = t_quantile(level, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.fmean(diffs), half


@dataclass
class Row:
    key: str
    title: str
    mean: float
    std: float | None
    n: int
    diff: float | None = None  # mean difference to no mixing over the paired seeds (points)
    half: float | None = None  # half-width of its 95 % t interval
    paper: float | None = None  # the paper's CIFAR-10 ResNet-18 accuracy for this method


def summarize(report: Report, intervals: bool = True) -> list[Row]:
    base = report.accuracies("none") if any(a.key == "none" for a in report.arms) else None
    rows = []
    for arm in report.arms:
        accs = report.accuracies(arm.key)
        if not accs:
            continue
        row = Row(
            arm.key, arm.title, statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else None, len(accs)
        )
        if intervals and base is not None and arm.key != "none" and len(accs) > 1 and len(base) == len(accs):
            row.diff, row.half = paired_difference(accs, base)
        if arm.method in PAPER_CIFAR10_RESNET18 and (arm.method != "attentive" or arm.top_k == PAPER_TOP_K):
            row.paper = PAPER_CIFAR10_RESNET18[arm.method]
        rows.append(row)
    return rows


def _acc(row: Row) -> str:
    return f"{row.mean:.2f}" + ("" if row.std is None else f" ± {row.std:.2f}")


def _diff(row: Row) -> str:
    if row.diff is None or row.half is None:
        return "—"
    return f"{row.diff:+.2f} [{row.diff - row.half:+.2f}, {row.diff + row.half:+.2f}]"


def _paper(row: Row) -> str:
    if row.paper is None:
        return "—"
    base = PAPER_CIFAR10_RESNET18["none"]
    return f"{row.paper:.2f}" + ("" if row.key == "none" else f" ({row.paper - base:+.2f})")


HEADER = (
    "method",
    "test accuracy (%), mean ± std",
    "vs no mixing (points), mean [95 % CI]",
    "paper, CIFAR-10 ResNet-18 (%) (vs no mixing)",
)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---|---|"]
    lines += [f"| {r.title} | {_acc(r)} | {_diff(r)} | {_paper(r)} |" for r in rows]
    return "\n".join(lines)


def rst_table(rows: list[Row], caption: str) -> str:
    lines = [f".. list-table:: {caption}", "   :header-rows: 1", ""]
    for cells in [HEADER, *[(r.title, _acc(r), _diff(r), _paper(r)) for r in rows]]:
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" for cell in cells[1:]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    cpu = names[0] if names else (platform.processor() or platform.machine())
    return f"{cpu} ({os.cpu_count()} cores)"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def describe(data: Data, settings: Settings, report: Report, command: str) -> dict[str, str]:
    """The sentences shared by the terminal, results.md and the docs."""
    import torchvision

    where = settings.device if settings.device != "cpu" else f"CPU, {machine()}"
    model = "a 3-stage CNN" if settings.model == "small" else "torchvision's ResNet-18 (3x3 stem, no max-pool)"
    per_run = statistics.fmean(r.seconds for r in report.runs) if report.runs else 0.0
    out = {
        "command": command,
        "run": (
            f"{len(report.arms)} {'settings' if settings.sweep else 'methods'} x {settings.seeds} paired seeds x "
            f"{settings.epochs} epochs; "
            f"{_duration(report.seconds)} in all ({per_run:.1f} s per training run; CPU time "
            f"{_duration(report.cpu_seconds)}) on {where}, "
            f"{settings.threads} torch threads, torch {torch.__version__}, torchvision {torchvision.__version__}"
        ),
        "data": (
            f"{data.name}: {data.description}; {len(data.train_y)} training and {len(data.test_y)} test images, "
            f"{data.num_classes} classes"
        ),
        "training": (
            f"{model}, batch {settings.batch_size}, SGD (Nesterov, momentum 0.9, weight decay 5e-4), one-cycle "
            f"learning rate up to {settings.lr}"
            + (", random 4-pixel shifts and flips" if settings.augment else "")
            + f"; alpha {settings.alpha} for MixUp and CutMix; Attentive CutMix: grid {settings.grid_size}"
            + (f", N = {settings.top_k[0]} cells" if not settings.sweep else ", N swept")
        ),
    }
    if report.extractor_accuracy is not None:
        out["extractor"] = (
            f"the same network trained without mixing (seed {EXTRACTOR_SEED}): "
            f"{report.extractor_accuracy:.2f} % test accuracy, {_duration(report.extractor_seconds)}"
        )
    if report.skipped:
        out["skipped"] = "; ".join(report.skipped)
    return out


def write_csv(path: str, report: Report) -> None:
    """One line per run; nothing machine-time dependent, so equal seeds give an identical file."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "title", "top_k", "seed", "test_accuracy", "final_train_loss", "init", "order"])
        for r in report.runs:
            top_k = r.arm.top_k if r.arm.method == "attentive" else ""
            writer.writerow([r.arm.key, r.arm.title, top_k, r.seed, repr(r.accuracy), repr(r.loss), r.init, r.order])


def read_csv(path: str) -> Report:
    """The runs of a ``results.csv`` (for recomputing its table)."""
    arms: dict[str, Arm] = {}
    runs = []
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            key = line["method"]
            method = "attentive" if key.startswith("attentive") else key
            arm = arms.setdefault(key, Arm(key, method, line["title"], int(line["top_k"] or PAPER_TOP_K)))
            runs.append(
                Run(
                    arm,
                    int(line["seed"]),
                    float(line["test_accuracy"]),
                    float(line["final_train_loss"]),
                    line["init"],
                    line["order"],
                    0.0,
                )
            )
    return Report(list(arms.values()), runs)


def write_report(
    out: str, data: Data, settings: Settings, report: Report, command: str, write: str | None = None
) -> list[str]:
    os.makedirs(out, exist_ok=True)
    rows = summarize(report, settings.intervals)
    text = describe(data, settings, report, command)
    md = [f"# torchvision-mix compare\n\nCommand: `{command}`\n"]
    md += [f"- {key}: {value}" for key, value in text.items() if key != "command"]
    md += ["", markdown_table(rows), ""]
    if report.classes:
        md.append("Classes: " + ", ".join(f"{k}: {v}" for k, v in report.classes.items()) + "\n")
    md.append("Per-run wall time: " + ", ".join(f"{r.arm.key}/{r.seed}: {r.seconds:.1f} s" for r in report.runs) + "\n")
    paths = [os.path.join(out, "results.md"), os.path.join(out, "results.csv")]
    with open(paths[0], "w") as f:
        f.write("\n".join(md))
    write_csv(paths[1], report)
    figure = draw_figure(os.path.join(out, "compare.png"), data, settings, report, rows)
    if figure:
        paths.append(figure)
    if write:
        paths += write_rst(write, settings, rows, text, figure, paths[1])
    return paths


def section(settings: Settings, methods_text: str | None) -> str:
    """Which part of the docs page a run regenerates."""
    if settings.sweep:
        return "top-k"
    if methods_text is not None and methods_text.strip() == "cutmix-variants":
        return "cutmix-variants"
    return "main"


def markers(name: str) -> tuple[str, str]:
    return f".. begin-compare-{name}", f".. end-compare-{name}"


def check_write_target(path: str, name: str) -> None:
    """Before a long run: the page must exist and hold this section's marker lines."""
    begin, end = markers(name)
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise CommandError(f"--write {path}: cannot read it ({error.strerror})") from None
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise CommandError(f"--write {path}: it has no '{begin}' ... '{end}' lines to write between")


def write_rst(
    path: str, settings: Settings, rows: list[Row], text: dict[str, str], figure: str | None, runs_csv: str
) -> list[str]:
    """Replace the section between this run's marker lines in ``path``; its figure and the runs'
    CSV go to ``_static/`` beside the page (the CSV lets a test recompute the table)."""
    name = settings.section
    begin, end = markers(name)
    check_write_target(path, name)
    stem = "compare" if name == "main" else f"compare-{name}"
    static = os.path.join(os.path.dirname(os.path.abspath(path)), "_static")
    os.makedirs(static, exist_ok=True)
    shutil.copyfile(runs_csv, os.path.join(static, f"{stem}.csv"))
    written = [path, os.path.join(static, f"{stem}.csv")]
    lines = [
        f"Command: ``{text['command']}``",
        "",
        f"Run: {text['run']}.",
        "",
        f"Data: {text['data']}.",
        "",
        f"Training: {text['training']}.",
    ]
    if "extractor" in text:
        lines += ["", f"Attentive CutMix's extractor: {text['extractor']}."]
    if "skipped" in text:
        lines += ["", f"Skipped: {text['skipped']}."]
    caption = "Test accuracy over paired seeds; the paper's CIFAR-10 ResNet-18 row beside it"
    lines += ["", rst_table(rows, caption)]
    lines += ["", f"Every run (seed, accuracy, final loss, fingerprints): :download:`{stem}.csv <_static/{stem}.csv>`."]
    if figure:
        target = os.path.join(static, f"{stem}.png")
        shutil.copyfile(figure, target)
        written.append(target)
        alt = (
            "Test accuracy against the number of pasted cells N, with 95 % intervals."
            if settings.sweep
            else "Each method's mean difference to no mixing with its 95 % interval, and mixed training samples."
        )
        lines += ["", f".. image:: _static/{stem}.png", f"   :alt: {alt}"]
    with open(path) as f:
        page = f.read()
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n\n" + "\n".join(lines) + "\n\n" + end + tail)
    return written


def draw_figure(path: str, data: Data, settings: Settings, report: Report, rows: list[Row]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('(no figure: pip install "torchvision-mix[demo]" for matplotlib)', file=sys.stderr)
        return None
    fig = _sweep_figure(plt, settings, rows) if settings.sweep else _methods_figure(plt, data, settings, report, rows)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_figure(plt: Any, settings: Settings, rows: list[Row]) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    sweep = [r for r in rows if r.key.startswith("attentive-k")]
    ks = [int(r.key.removeprefix("attentive-k")) for r in sweep]
    means = [r.mean for r in sweep]
    base = next((r for r in rows if r.key == "none"), None)
    if base is not None and all(r.half is not None for r in sweep):
        errors = [r.half for r in sweep]
        ax.errorbar(ks, means, yerr=errors, fmt="o-", color="#c44e52", capsize=3, label="Attentive CutMix")
        ax.axhline(base.mean, color="0.3", linestyle="--", label=f"no mixing ({base.mean:.2f} %)")
        ax.set_ylabel("test accuracy (%), mean over seeds\nbars: 95 % CI of the paired difference to no mixing")
    else:
        ax.plot(ks, means, "o-", color="#c44e52", label="Attentive CutMix")
        ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.axvline(PAPER_TOP_K, color="0.6", linestyle=":", label=f"the paper's choice, N = {PAPER_TOP_K}")
    ax.set_xlabel(f"N, cells pasted (of {settings.grid_size}x{settings.grid_size})")
    ax.set_xticks(ks)
    ax.legend(fontsize=8)
    ax.set_title(f"Attentive CutMix against N: {settings.seeds} paired seeds, {settings.epochs} epochs", fontsize=10)
    return fig


def _methods_figure(plt: Any, data: Data, settings: Settings, report: Report, rows: list[Row]) -> Any:
    arms = report.arms
    n_show = min(8, len(data.train_y))
    shown = [r for r in rows if r.key != "none"]
    top_height = 1.4 + 0.42 * max(1, len(shown))
    fig = plt.figure(figsize=(10.0, top_height + 1.25 * len(arms)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_height, 1.25 * len(arms)])
    ax = top.subplots()
    positions = list(range(len(shown)))
    if shown and all(r.diff is not None for r in shown):
        diffs = [r.diff for r in shown]
        halves = [r.half for r in shown]
        ax.errorbar(diffs, positions, xerr=halves, fmt="o", color="#4c72b0", capsize=4, label="this run, 95 % CI")
        paper = [(r.paper - PAPER_CIFAR10_RESNET18["none"], i) for i, r in enumerate(shown) if r.paper is not None]
        if paper:
            ax.plot(*zip(*paper, strict=True), "D", mfc="none", color="#dd8452", label="paper, CIFAR-10 ResNet-18")
        ax.axvline(0.0, color="0.3", linewidth=1)
        ax.set_xlabel("test accuracy minus no mixing's on the same seed (points)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.barh(positions, [r.mean for r in shown], color="#4c72b0")
        ax.set_xlabel("test accuracy (%)")
    ax.set_yticks(positions, [f"{r.title}  {_acc(r)} %" for r in shown], fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    base = next((r for r in rows if r.key == "none"), None)
    title = f"{data.name}: {settings.seeds} paired seeds, {settings.epochs} epochs"
    ax.set_title(title + (f"; no mixing {_acc(base)} %" if base else ""), fontsize=10)
    axes = bottom.subplots(len(arms), n_show, squeeze=False)
    bottom.suptitle("training samples as each method mixes them (seed 0), titled class:weight", fontsize=9)
    x, y = data.train_x[:n_show], data.train_y[:n_show]
    for r, arm in enumerate(arms):
        mix = build_mix(arm.method, mix_context(settings, arm, data.num_classes, report.extractor, seed=0))
        if isinstance(mix, LinearSchedule):
            mix.set_epoch(1, 1)  # scheduled CutMix at the end of training
        if mix is None:
            mixed, soft = x, nn.functional.one_hot(y, data.num_classes).float()
        else:
            mixed, soft = mix(x.to(settings.device), y.to(settings.device))
            mixed, soft = mixed.cpu(), soft.cpu()
        for c in range(n_show):
            sub = axes[r, c]
            image = mixed[c].permute(1, 2, 0).clamp(0, 1).numpy()
            sub.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            top_k = soft[c].topk(min(2, data.num_classes))
            parts = [f"{int(k)}:{float(v):.2f}" for k, v in zip(top_k.indices, top_k.values, strict=True) if v > 0]
            sub.set_title(" ".join(parts), fontsize=7)
            sub.set_xticks([])
            sub.set_yticks([])
            if c == 0:
                sub.set_ylabel(arm.title, fontsize=8, rotation=0, ha="right", va="center")
    return fig
