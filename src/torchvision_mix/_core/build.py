"""Stage 2 of every mix: **build** the partner's per-pixel weight from the sampled parameters.

For the mask family (CutMix, Attentive CutMix, SaliencyMix, FMix, GridMix) the weight is a boolean
mask ``(B, H, W)``, ``True`` where sample ``i`` takes its partner's pixel. Deterministic, on any
device: only the few sampled numbers travel to it, never a mask.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import _check_size, _describe

__all__ = ["boxes_to_masks", "cell_bounds", "grid_to_masks", "top_k_cells"]


def boxes_to_masks(boxes: Tensor, height: int, width: int, *, device: torch.device | str | None = None) -> Tensor:
    """Turn boxes ``(B, 4)`` (``x1, y1, x2, y2``, half-open, in pixels) into masks ``(B, H, W)``.

    Coordinates outside the image are clipped; an empty box gives an all-``False`` mask.

    Args:
        boxes: integer tensor of shape ``(B, 4)``.
        height: mask height ``H``.
        width: mask width ``W``.
        device: where to build the masks; defaults to ``boxes.device``. Only the ``4 * B``
            coordinates travel, never a mask.

    Returns:
        A boolean tensor of shape ``(B, H, W)``.

    Example:
        >>> boxes_to_masks(torch.tensor([[1, 0, 3, 2]]), 3, 4).int()
        tensor([[[0, 1, 1, 0],
                 [0, 1, 1, 0],
                 [0, 0, 0, 0]]], dtype=torch.int32)
    """
    _check_size(height, width)
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        got = _describe(boxes)
        raise ValueError(f"boxes must be a tensor of shape (B, 4), but got {got}.")
    if boxes.is_floating_point() or boxes.is_complex() or boxes.dtype == torch.bool:
        raise TypeError(f"boxes must hold integer pixel coordinates, but got dtype {boxes.dtype}.")
    device = boxes.device if device is None else torch.device(device)
    if boxes.device != device:
        boxes = boxes.to(device, non_blocking=True)
    x1, y1, x2, y2 = boxes.T.unsqueeze(-1).unbind(0)  # each (B, 1)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= y1) & (rows < y2)  # (B, H)
    in_cols = (cols >= x1) & (cols < x2)  # (B, W)
    if torch.compiler.is_compiling():
        # Inductor fuses the plain bool form; the byte views below break its vectorised CPU code.
        return in_rows.unsqueeze(2) & in_cols.unsqueeze(1)
    # 0/1 bytes (bool viewed as uint8): the outer product runs ~20x faster than bool `&` on the CPU.
    in_rows, in_cols = in_rows.view(torch.uint8), in_cols.view(torch.uint8)
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).view(torch.bool)


def cell_bounds(size: int, cells: int) -> Tensor:
    """Pixel boundaries of ``cells`` grid cells along an axis of ``size`` pixels.

    Cell ``k`` covers pixels ``ceil(k * size / cells)`` up to (excluded)
    ``ceil((k + 1) * size / cells)``: integer cells that tile the axis exactly, every pixel in
    exactly one cell, sizes differing by at most one pixel. Pixel ``r`` lies in cell
    ``floor(r * cells / size)``.

    Returns:
        An int64 tensor of shape ``(cells + 1,)`` from ``0`` to ``size``.

    Example:
        >>> cell_bounds(224, 7).tolist()
        [0, 32, 64, 96, 128, 160, 192, 224]
        >>> cell_bounds(61, 7).diff().tolist()
        [9, 9, 9, 8, 9, 9, 8]
    """
    if not isinstance(cells, int) or isinstance(cells, bool) or cells < 1:
        raise ValueError(f"cells must be an int >= 1, but got {cells!r}.")
    if not isinstance(size, int) or isinstance(size, bool) or size < cells:
        raise ValueError(f"size must be an int >= cells ({cells}) so that no cell is empty, but got {size!r}.")
    k = torch.arange(cells + 1)
    return (k * size + cells - 1) // cells


def grid_to_masks(cells: Tensor, height: int, width: int) -> Tensor:
    """Upsample a boolean cell grid ``(B, gh, gw)`` to pixel masks ``(B, H, W)``, exactly.

    The ``gh x gw`` cells tile the image as :func:`cell_bounds` says, for every ``H`` and ``W``
    (sizes that ``gh``/``gw`` do not divide and non-square images included): no overlap, no gap,
    no pixel short. Requires ``gh <= H`` and ``gw <= W``.

    Example:
        >>> cells = torch.tensor([[[True, False], [False, False]]])
        >>> grid_to_masks(cells, 3, 5).int()
        tensor([[[1, 1, 1, 0, 0],
                 [1, 1, 1, 0, 0],
                 [0, 0, 0, 0, 0]]], dtype=torch.int32)
    """
    _check_size(height, width)
    if not isinstance(cells, Tensor) or cells.ndim != 3:
        got = _describe(cells)
        raise ValueError(f"cells must be a tensor of shape (B, gh, gw), but got {got}.")
    if cells.dtype != torch.bool:
        raise TypeError(f"cells must be a boolean tensor, but got dtype {cells.dtype}.")
    gh, gw = cells.shape[1:]
    if gh > height or gw > width:
        raise ValueError(
            f"The grid ({gh}x{gw}) is larger than the image ({height}x{width}): some cells would hold no pixel."
        )
    row_cell = torch.arange(height, device=cells.device) * gh // height
    # Built as uint8 bytes, faster than bool on the CPU; under torch.compile as bool, since the
    # byte views break inductor's vectorised CPU code.
    compiling = torch.compiler.is_compiling()
    rows = (cells if compiling else cells.view(torch.uint8)).index_select(1, row_cell)  # (B, H, gw), small
    batch = cells.shape[0]
    if width % gw == 0:
        # Equal cell widths: a broadcast copy, ~5x faster than gathering every pixel.
        out = rows[..., None].expand(batch, height, gw, width // gw).reshape(batch, height, width)
    else:
        col_cell = torch.arange(width, device=cells.device) * gw // width
        out = rows.index_select(2, col_cell)
    return out if compiling else out.view(torch.bool)


def top_k_cells(heatmaps: Tensor, k: int | Tensor) -> Tensor:
    """Select the ``k`` highest cells of every heatmap ``(B, gh, gw)``.

    Ties are broken deterministically: among equal values the cell with the lower flat
    (row-major) index wins. ``NaN`` cells rank last. Runs on the heatmaps' device without a host
    synchronisation.

    Args:
        heatmaps: real tensor of shape ``(B, gh, gw)``.
        k: number of cells per sample, an int or an integer tensor of shape ``(B,)`` (one per
            sample), each in ``[0, gh * gw]``.

    Returns:
        A boolean tensor of shape ``(B, gh, gw)`` with exactly ``k`` (or ``k[i]``) ``True`` cells
        per sample.

    Example:
        >>> heat = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])
        >>> top_k_cells(heat, 2).int()
        tensor([[[0, 1],
                 [0, 1]]], dtype=torch.int32)
    """
    if not isinstance(heatmaps, Tensor) or heatmaps.ndim != 3:
        got = _describe(heatmaps)
        raise ValueError(f"heatmaps must be a tensor of shape (B, gh, gw), but got {got}.")
    if heatmaps.is_complex() or heatmaps.dtype == torch.bool:
        raise TypeError(f"heatmaps must be real numbers, but got dtype {heatmaps.dtype}.")
    batch, gh, gw = heatmaps.shape
    n = gh * gw
    if isinstance(k, Tensor):
        if k.shape != (batch,) or k.is_floating_point() or k.dtype == torch.bool:
            raise ValueError(
                f"k must be an int or an integer tensor of shape ({batch},), but got {k.dtype} {tuple(k.shape)}."
            )
        k = k.to(heatmaps.device, non_blocking=True)[:, None]
    elif not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}] (the number of cells), but got {k!r}.")
    flat = heatmaps.reshape(batch, n)
    if flat.is_floating_point():
        flat = torch.nan_to_num(flat, nan=-math.inf)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=flat.device).expand(batch, n))
    return (ranks < k).reshape(batch, gh, gw)
