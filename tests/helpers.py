"""Shared test helpers: pixel masks, image sizes, seeded mixes, a user's mask mix, a tiny extractor."""

import torch
from hypothesis import strategies as st
from torch import nn

from torchvision_mix import MaskMix


def foreign_masks(out: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """(B, H, W) boolean: pixels of each output sample that differ from the sample's own input."""
    out, src = out.as_subclass(torch.Tensor), src.as_subclass(torch.Tensor)
    diff = out != src
    return diff.reshape(out.shape[0], -1, *out.shape[-2:]).any(dim=1)


def is_one_rectangle(mask: torch.Tensor) -> bool:
    """True when the (H, W) mask is empty or exactly one axis-aligned filled rectangle."""
    if not mask.any():
        return True
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    y1, y2, x1, x2 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return bool(mask[y1:y2, x1:x2].all()) and int(mask.sum()) == (y2 - y1) * (x2 - x1)


def image_sides(low, high):
    """``image_batches`` arguments for heights and widths drawn independently in ``[low, high]``."""
    return {"heights": st.integers(low, high), "widths": st.integers(low, high)}


def seeded(mix_class, seed=0, **kwargs):
    """``mix_class(**kwargs)`` with its own generator seeded with ``seed``."""
    return mix_class(generator=torch.Generator().manual_seed(seed), **kwargs)


class Stripes(MaskMix):
    """A user's mix on the public base: every other column band of width ``band`` comes from the partner,
    shifted by a random offset (images at least ``band + 1`` wide are always mixed)."""

    def __init__(self, *, band: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.band = band

    def make_masks(self, batch):
        b, h, w = batch.shape[0], batch.shape[-2], batch.shape[-1]
        offsets = torch.randint(self.band, (b if self.per_sample else 1,), generator=self.generator)
        cols = (torch.arange(w) + offsets[:, None]) // self.band % 2 == 1  # (b or 1, W)
        return cols[:, None, :].expand(b, h, w).to(batch.device)


class TinyExtractor(nn.Module):
    """A one-layer CNN for any channel count and dtype: the mean channel through a 3x3 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x.float().mean(dim=1, keepdim=True))
