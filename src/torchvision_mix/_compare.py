"""``torchvision-mix compare``: a miniature of the papers' comparison table.

Trains the same small CNN with no mixing, torchvision's MixUp, CutMix and Attentive CutMix over a
few seeds and reports test accuracy (mean ± std) per method. Attentive CutMix uses a "pretrained"
feature extractor: the same CNN trained once without mixing on the training split.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import AttentiveCutMix, CutMix

METHODS = ("none", "mixup", "cutmix", "attentive")
METHOD_NAMES = {
    "none": "no mixing",
    "mixup": "MixUp (torchvision)",
    "cutmix": "CutMix",
    "attentive": "Attentive CutMix",
}


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


@dataclass
class Settings:
    epochs: int = 30
    batch_size: int = 64
    seeds: int = 3
    lr: float = 0.05
    device: str = "cpu"
    grid_size: int = 7
    top_k: int = 6
    alpha: float = 1.0
    image_size: int = 28
    methods: tuple[str, ...] = METHODS
    out: str = "torchvision-mix-report"
    results: dict[str, list[float]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def _resize(x: Tensor, size: int) -> Tensor:
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


def load_digits_data(image_size: int) -> Data:
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes), upsampled; a fixed 75/25 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise CommandError(
            'the default dataset needs scikit-learn: pip install "torchvision-mix[demo]" (or pass --dataset)'
        ) from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = _resize(x[order], image_size), y[order]
    cut = len(y) * 3 // 4
    return Data(
        x[:cut], y[:cut], x[cut:], y[cut:], 10, f"digits (scikit-learn, upsampled to {image_size}x{image_size})"
    )


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
    return Data(train_x, train_y, test_x, test_y, 10, "CIFAR-10")


def load_folder_data(root: str, image_size: int) -> Data:
    """An image folder (``root/class_name/image.ext``), split 75/25 per the fixed seed."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    if not os.path.isdir(root):
        raise CommandError(f"no such folder: {root}")
    try:
        ds = ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as error:
        raise CommandError(f"{root} is not an image folder (root/class_name/image files): {error}") from None
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
    return Data(x[:cut], y[:cut], x[cut:], y[cut:], len(ds.classes), f"image folder {root}")


def load_data(name: str, root: str | None, image_size: int) -> Data:
    if name == "digits":
        return load_digits_data(image_size)
    if root is None:
        raise CommandError(f"--dataset {name} needs --root DIR")
    if name == "cifar10":
        return load_cifar10_data(root, image_size)
    if name == "folder":
        return load_folder_data(root, image_size)
    raise CommandError(f"unknown dataset {name!r}: choose digits, cifar10 or folder")


# ------------------------------------------------------------------------------------------------
# Model and training
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


class Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
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


def make_mix(method: str, settings: Settings, num_classes: int, extractor: nn.Module | None, seed: int) -> Any:
    from torchvision.transforms import v2

    g = torch.Generator().manual_seed(10_000 + seed)
    if method == "mixup":
        return v2.MixUp(alpha=settings.alpha, num_classes=num_classes)
    if method == "cutmix":
        return CutMix(alpha=settings.alpha, num_classes=num_classes, generator=g)
    if method == "attentive":
        return AttentiveCutMix(
            feature_extractor=extractor,
            extractor_size=max(settings.image_size, 4 * settings.grid_size),  # the trunk downsamples by 4
            grid_size=settings.grid_size,
            top_k=settings.top_k,
            num_classes=num_classes,
            generator=g,
        )
    return None


def train(
    data: Data,
    settings: Settings,
    seed: int,
    mix: Callable[..., Any] | None,
    progress: Progress,
    label: str,
) -> SmallCNN:
    device = torch.device(settings.device)
    torch.manual_seed(seed)
    model = SmallCNN(data.train_x.shape[1], data.num_classes).to(device)
    steps_per_epoch = math.ceil(len(data.train_y) / settings.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch
    )
    order_gen = torch.Generator().manual_seed(seed)
    x_all, y_all = data.train_x.to(device), data.train_y.to(device)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(y_all), generator=order_gen).to(device)
        for start in range(0, len(order), settings.batch_size):
            index = order[start : start + settings.batch_size]
            x, y = x_all[index], y_all[index]
            if mix is not None and len(index) > 1:
                x, y = mix(x, y)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        progress.step(f"{label} epoch {epoch + 1}/{settings.epochs}")
    return model


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, device: str) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data.test_y), 512):
        x = data.test_x[start : start + 512].to(device)
        y = data.test_y[start : start + 512].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(data.test_y)


def check_settings(settings: Settings) -> None:
    """Settings that are impossible whatever the data; checked before anything is loaded."""
    if settings.top_k > settings.grid_size**2:
        raise CommandError(f"--top-k {settings.top_k} is larger than the grid's {settings.grid_size**2} cells")
    if settings.grid_size > settings.image_size:
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({settings.image_size}px)")


def run_compare(data: Data, settings: Settings) -> dict[str, Any]:
    """Train every method over the seeds; return accuracies, timings and the extractor."""
    check_settings(settings)
    h, w = data.train_x.shape[-2:]
    if settings.grid_size > min(h, w):
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({h}x{w})")
    if len(data.train_y) < 2 or len(data.test_y) < 1:
        raise CommandError("the dataset is empty or too small to train and test on")
    need_extractor = "attentive" in settings.methods
    total = settings.epochs * (len(settings.methods) * settings.seeds + int(need_extractor))
    progress = Progress(total)
    timings: dict[str, float] = {}
    extractor: nn.Module | None = None
    if need_extractor:
        start = time.perf_counter()
        pretrained = train(data, settings, seed=12_345, mix=None, progress=progress, label="pretraining extractor")
        trunk = pretrained.features.eval().requires_grad_(False)
        extractor = trunk
        timings["pretraining the feature extractor"] = time.perf_counter() - start
    results: dict[str, list[float]] = {}
    for method in settings.methods:
        start = time.perf_counter()
        results[method] = []
        for seed in range(settings.seeds):
            mix = make_mix(method, settings, data.num_classes, extractor, seed)
            model = train(data, settings, seed, mix, progress, f"{METHOD_NAMES[method]} seed {seed}")
            results[method].append(accuracy(model, data, settings.device))
        timings[METHOD_NAMES[method]] = time.perf_counter() - start
    progress.close()
    return {"results": results, "timings": timings, "extractor": extractor}


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------


def summary_rows(results: dict[str, list[float]]) -> list[tuple[str, float, float, int]]:
    rows = []
    for method, accs in results.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append((METHOD_NAMES[method], statistics.fmean(accs), std, len(accs)))
    return rows


def markdown_table(results: dict[str, list[float]]) -> str:
    lines = ["| method | test accuracy (%) | seeds |", "|---|---|---|"]
    for name, mean, std, n in summary_rows(results):
        lines.append(f"| {name} | {mean:.2f} ± {std:.2f} | {n} |")
    return "\n".join(lines)


def write_report(out: str, data: Data, settings: Settings, report: dict[str, Any], command: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    results = report["results"]
    table = markdown_table(results)
    timing = "\n".join(f"- {name}: {seconds:.0f} s" for name, seconds in report["timings"].items())
    md = (
        f"# torchvision-mix compare\n\nCommand: `{command}`\n\nDataset: {data.name}; "
        f"{len(data.train_y)} training and {len(data.test_y)} test images, {data.num_classes} classes. "
        f"Model: a 3-stage CNN, {settings.epochs} epochs, batch {settings.batch_size}, SGD + one-cycle, "
        f"alpha={settings.alpha}; Attentive CutMix: grid {settings.grid_size}, top_k {settings.top_k}.\n\n"
        f"{table}\n\nWall time:\n\n{timing}\n"
    )
    paths = [os.path.join(out, "results.md"), os.path.join(out, "results.csv")]
    with open(paths[0], "w") as f:
        f.write(md)
    with open(paths[1], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seed", "test_accuracy"])
        for method, accs in results.items():
            for seed, acc in enumerate(accs):
                writer.writerow([METHOD_NAMES[method], seed, f"{acc:.4f}"])
    figure = _figure(out, data, settings, report)
    if figure:
        paths.append(figure)
    return paths


def _figure(out: str, data: Data, settings: Settings, report: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('(no figure: pip install "torchvision-mix[demo]" for matplotlib)', file=sys.stderr)
        return None
    rows = summary_rows(report["results"])
    methods = list(report["results"])
    n_show = min(8, len(data.train_y))
    fig = plt.figure(figsize=(1.3 * n_show, 2.4 + 1.2 * len(methods)))
    grid = fig.add_gridspec(1 + len(methods), n_show, height_ratios=[2.2] + [1.0] * len(methods))
    ax = fig.add_subplot(grid[0, :])
    means = [r[1] for r in rows]
    ax.barh([r[0] for r in rows], means, xerr=[r[2] for r in rows], color="#4c72b0", capsize=4)
    spread = max(max(r[2] for r in rows), 0.5)
    ax.set_xlim(max(0.0, min(means) - 4 * spread), min(100.0, max(means) + 3 * spread))
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%), mean ± std over seeds")
    for i, (_, mean, std, _) in enumerate(rows):
        ax.text(mean + std, i, f"  {mean:.2f}", va="center", fontsize=9)
    x, y = data.train_x[:n_show], data.train_y[:n_show]
    for r, method in enumerate(methods):
        mix = make_mix(method, settings, data.num_classes, report["extractor"], seed=0)
        mixed, soft = (x, nn.functional.one_hot(y, data.num_classes).float()) if mix is None else mix(x, y)
        for c in range(n_show):
            sub = fig.add_subplot(grid[1 + r, c])
            image = mixed[c].permute(1, 2, 0).clamp(0, 1).numpy()
            sub.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            top = soft[c].topk(2)
            parts = [f"{int(k)}:{float(v):.2f}" for k, v in zip(top.indices, top.values, strict=True) if float(v) > 0]
            sub.set_title(" ".join(parts), fontsize=7)
            sub.set_xticks([])
            sub.set_yticks([])
            if c == 0:
                sub.set_ylabel(METHOD_NAMES[method], fontsize=8)
    fig.suptitle(f"{data.name}: {settings.epochs} epochs, {settings.seeds} seeds")
    fig.tight_layout()
    path = os.path.join(out, "compare.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
