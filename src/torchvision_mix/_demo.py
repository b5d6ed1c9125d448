"""``torchvision-mix demo``: a picture of what CutMix and Attentive CutMix do to real photos."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from torch import Tensor, nn

from . import AttentiveCutMix, CutMix, attention, masks
from ._compare import CommandError

SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


class EdgeEnergy(nn.Module):
    """Offline stand-in for a pretrained network: local edge energy (Sobel magnitude of the grey image).

    Used by the demo when torchvision's pretrained weights cannot be loaded. It attends to
    textured, high-contrast regions; it has learnt nothing about objects.
    """

    kernels: Tensor

    def __init__(self, stride: int = 32) -> None:
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.T])[:, None])
        self.stride = stride

    def forward(self, images: Tensor) -> Tensor:
        grey = images.mean(dim=1, keepdim=True)
        grad = nn.functional.conv2d(grey, self.kernels, padding=1)
        energy = grad.square().sum(dim=1, keepdim=True).sqrt()
        return nn.functional.avg_pool2d(energy, self.stride)


def load_images(paths: list[str], size: int) -> tuple[Tensor, list[str]]:
    """Images as a float batch (B, 3, size, size) in [0, 1], and their names."""
    from torchvision.transforms import v2

    resize = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    )
    images, names = [], []
    if paths:
        import PIL.Image

        for path in paths:
            if not os.path.isfile(path):
                raise CommandError(f"no such image file: {path}")
            try:
                with PIL.Image.open(path) as image:
                    rgb = image.convert("RGB")
            except Exception as error:
                raise CommandError(f"cannot read image {path}: {error}") from None
            images.append(resize(rgb))
            names.append(os.path.basename(path))
    else:
        try:
            from skimage import data
        except ImportError:
            raise CommandError(
                'the sample photos need scikit-image: pip install "torchvision-mix[demo]", or pass image files'
            ) from None
        for name in SAMPLE_IMAGES:
            array = getattr(data, name)()
            images.append(resize(torch.from_numpy(array.copy()).permute(2, 0, 1)))
            names.append(name)
    if len(images) < 2:
        raise CommandError("the demo needs at least two images (each is the other's partner)")
    return torch.stack(images), names


def pick_extractor(weights_path: str | None) -> tuple[Any, str]:
    try:
        return attention.feature_extractor("resnet50", weights_path=weights_path), "ResNet-50 (ImageNet)"
    except (RuntimeError, OSError) as error:
        reason = str(error).split(". ")[0]
        print(
            f"demo: pretrained ResNet-50 unavailable ({reason}); using the edge-energy fallback instead",
            file=sys.stderr,
        )
        return EdgeEnergy(), "edge energy (offline fallback)"


def _suptitle(fig: Any, text: str) -> None:
    """The figure's title, on as many lines as its width needs (a grid of few images is narrow)."""
    title = fig.suptitle(text)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    words = text.split(" ")
    lines = 1
    while title.get_window_extent(renderer).width > 0.96 * fig.bbox.width and lines < len(words):
        lines += 1
        per_line = -(-len(words) // lines)
        title.set_text("\n".join(" ".join(words[k : k + per_line]) for k in range(0, len(words), per_line)))
        fig.tight_layout()


def make_demo(
    paths: list[str],
    out: str,
    *,
    size: int = 224,
    grid_size: int = 7,
    top_k: int = 6,
    seed: int = 0,
    weights_path: str | None = None,
) -> str:
    if top_k > grid_size**2:
        raise CommandError(f"--top-k {top_k} is larger than the grid's {grid_size**2} cells")
    if grid_size > size:
        raise CommandError(f"--grid-size {grid_size} is larger than the images ({size}x{size})")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.patches as patches
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError('the demo picture needs matplotlib: pip install "torchvision-mix[demo]"') from None
    images, names = load_images(paths, size)
    b = images.shape[0]
    labels = torch.arange(b)
    extractor, extractor_name = pick_extractor(weights_path)
    cut, cut_soft = CutMix(num_classes=b, per_sample=True, generator=torch.Generator().manual_seed(seed))(
        images, labels
    )
    # Both extractors downsample by 32: they see a copy with 32 pixels per grid cell; the cells map onto `images`.
    extractor_size = max(size, 32 * grid_size)
    attentive = AttentiveCutMix(
        feature_extractor=extractor, extractor_size=extractor_size, grid_size=grid_size, top_k=top_k, num_classes=b
    )
    att, att_soft = attentive(images, labels)
    with torch.no_grad():
        seen = images if extractor_size == size else nn.functional.interpolate(images, extractor_size, mode="bilinear")
        heat = attention.heatmaps(extractor(seen), grid_size)
    chosen = masks.top_k_cells(heat, top_k)  # each image's own top cells, shown on it as a donor
    rows_b, cols_b = masks.cell_bounds(size, grid_size).tolist(), masks.cell_bounds(size, grid_size).tolist()
    partner = (torch.arange(b) - 1) % b

    fig, axes = plt.subplots(4, b, figsize=(2.6 * b, 11))
    row_titles = ["original", "CutMix (per sample)", "Attentive CutMix", f"attention as a donor\n{extractor_name}"]
    for i in range(b):
        j = int(partner[i])
        panels = [
            (images[i], names[i]),
            (cut[i], f"λ={float(cut_soft[i, j]):.3f} from {names[j]}"),
            (att[i], f"λ={float(att_soft[i, j]):.3f} from {names[j]}"),
            (images[i], f"{names[i]}: top {top_k} of {grid_size}x{grid_size}"),
        ]
        for r, (image, title) in enumerate(panels):
            ax = axes[r, i]
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(row_titles[r], fontsize=9)
        ax = axes[3, i]
        up = nn.functional.interpolate(heat[i][None, None], size=(size, size), mode="nearest")[0, 0]
        ax.imshow(up.numpy(), cmap="inferno", alpha=0.55)
        for r, c in chosen[i].nonzero().tolist():
            ax.add_patch(
                patches.Rectangle(
                    (cols_b[c] - 0.5, rows_b[r] - 0.5),
                    cols_b[c + 1] - cols_b[c],
                    rows_b[r + 1] - rows_b[r],
                    fill=False,
                    edgecolor="cyan",
                    linewidth=1.5,
                )
            )
    _suptitle(fig, "torchvision-mix: each sample takes its pasted pixels from the previous one; λ = pasted fraction")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
