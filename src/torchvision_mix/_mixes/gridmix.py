"""GridMix (Baek et al., Pattern Recognition 2021): paste random cells of a grid."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._base import MaskMix
from .._core._checks import _check_grid_range, _check_positive, _check_probability
from .._core.build import grid_to_masks, grids_to_masks
from .._core.sample import sample_grids

__all__ = ["GridMix"]


class GridMix(MaskMix):
    """GridMix: cut the image into a grid and take every cell from the partner with probability ``t``.

    Paper: `GridMix: Strong regularization through local context mapping
    <https://sites.google.com/view/cvml-kaist/projects/gridmix-strong-regularization-through-local-context-mapping>`_
    (Baek, Bang and Shim, Pattern Recognition 2021).

    For every mask:

    1. a grid size ``g`` is drawn uniformly from the inclusive range ``grid_size`` (or is the
       given int);
    2. each of the ``g x g`` cells is taken from the partner independently with probability
       ``t``: ``t ~ Beta(alpha, alpha)``, or the fixed ``cell_p``
       (:func:`torchvision_mix.masks.sample_grids`);
    3. the cells are mapped to pixel rectangles that tile the image exactly, for every ``H`` and
       ``W`` (cell ``k`` covers ``ceil(k * H / g)`` up to ``ceil((k + 1) * H / g)``, and likewise
       for the width; :func:`torchvision_mix.masks.grids_to_masks`);
    4. the label weight ``lam`` is the exact pasted pixel fraction (cells of unequal sizes
       included), not the cell fraction.

    Without ``per_sample``, one grid (size, ``t`` and cells) for the batch; with ``per_sample``,
    each sample draws its own size, ``t`` and cells (and ``p``), vectorised: one mask build per
    distinct grid size, never a loop over the batch.

    This is the augmentation only. The paper also trains with an auxiliary *local context* loss:
    an extra head classifies every cell of the mixed image by the label of the image the cell came
    from. That head and loss are a change to the model and its training loop, not to the data,
    and are not part of this transform.

    Everything else (inputs, dtypes, devices, labels, ``p``, ``inplace``, ``label_smoothing``,
    ``generator``, errors) is as in :class:`CutMix`; segmentation masks are mixed with the same
    cells.

    Args:
        grid_size: cells per side: an int ``g >= 1``, or an inclusive range ``(low, high)`` to
            draw from, ``1 <= low <= high``; ``high`` must not exceed the image's height or
            width (checked on every batch, before anything changes). Default ``(2, 7)``.
        alpha: Beta(α, α) concentration of the cell probability ``t``, > 0. Not used with
            ``cell_p``.
        cell_p: a fixed probability in [0, 1] for every cell, instead of drawing ``t``.
        num_classes: as in :class:`CutMix`.
        labels_getter: as in :class:`CutMix`.
        p: as in :class:`CutMix`.
        per_sample: a grid (size, ``t``, cells and ``p``) per sample.
        inplace: as in :class:`CutMix`.
        label_smoothing: as in :class:`CutMix`.
        generator: as in :class:`CutMix`.

    Example:
        >>> import torch
        >>> from torchvision_mix import GridMix
        >>> mix = GridMix(grid_size=4, cell_p=0.5, num_classes=10, generator=torch.Generator().manual_seed(0))
        >>> images, labels = mix(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
        >>> partner = torch.tensor([3, 0, 1, 2])  # sample i - 1
        >>> (labels[torch.arange(4), partner] * 16).tolist()  # cells pasted of 16: one grid for the batch
        [14.0, 14.0, 14.0, 14.0]
    """

    def __init__(
        self,
        *,
        grid_size: int | tuple[int, int] = (2, 7),
        alpha: float = 1.0,
        cell_p: float | None = None,
        num_classes: int | None = None,
        labels_getter: Any = "default",
        p: float = 1.0,
        per_sample: bool = False,
        inplace: bool = False,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            labels_getter=labels_getter,
            p=p,
            per_sample=per_sample,
            inplace=inplace,
            label_smoothing=label_smoothing,
            generator=generator,
        )
        self.grid_size = _check_grid_range(grid_size)
        self.alpha = _check_positive("alpha", alpha)
        self.cell_p = _check_probability("cell_p", cell_p, optional=True)

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        height, width = batch.shape[-2], batch.shape[-1]
        high = self.grid_size[1]
        if high > height or high > width:
            raise ValueError(
                f"grid_size: a {high}x{high} grid is larger than the images ({height}x{width}): "
                "some cells would hold no pixel. Use a smaller grid_size."
            )

    def _masks(self, size: int, height: int, width: int, device: torch.device, per_sample: bool) -> Tensor:
        sizes, cells = sample_grids(
            size,
            grid_size=self.grid_size,
            alpha=self.alpha,
            cell_p=self.cell_p,
            per_sample=per_sample,
            generator=self.generator,
        )
        if not per_sample and size > 0:  # one grid: its size is a host value
            g = int(sizes[0])
            return grid_to_masks(cells[:, :g, :g].to(device, non_blocking=True), height, width)
        return grids_to_masks(sizes, cells, height, width, device=device)

    def make_masks(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        # Without per_sample one grid (1, H, W) for the batch: the base measures it once.
        if self.per_sample:
            return self._masks(size, height, width, batch.device, True)
        return self._masks(min(size, 1), height, width, batch.device, False)
