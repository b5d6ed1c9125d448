"""Shared test helpers."""

import torch
from hypothesis import strategies as st


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
