"""The shared mask-generation core: pure functions, no ``Transform``, no global state.

Every mix in this package is the same three stages:

1. **sample** random parameters (the only stage that draws random numbers, from an optional
   CPU :class:`torch.Generator`): :func:`sample_beta`, :func:`sample_boxes`;
2. **build** a boolean mask of shape ``(B, H, W)``, ``True`` where sample ``i`` takes the pixel
   of its partner: :func:`boxes_to_masks`, :func:`grid_to_masks`, :func:`top_k_cells`;
3. **apply** it: :func:`paste` moves the partner pixels, :func:`mask_fractions` measures the
   exact pasted fraction ``lam`` of every sample, and :func:`mix_labels` mixes the labels by it.

``lam`` always comes from the mask actually built, never from the sampled number, so the label
weights equal the pixel fractions exactly.

Pairing: unless a ``partner`` index is given, output sample ``i`` takes its pasted pixels from
input sample ``i - 1`` (sample ``0`` from sample ``B - 1``), the pairing of
:class:`torchvision.transforms.v2.CutMix`. It works for every batch size, odd ones and 1 included
(a batch of one is paired with itself and so comes out unchanged). The batch is expected to be
shuffled, as a DataLoader with ``shuffle=True`` does.

Example:
    >>> import torch
    >>> from torchvision_mix import masks
    >>> g = torch.Generator().manual_seed(0)
    >>> images = torch.rand(4, 3, 32, 48)
    >>> boxes = masks.sample_boxes(4, 32, 48, alpha=1.0, per_sample=True, generator=g)
    >>> m = masks.boxes_to_masks(boxes, 32, 48)
    >>> m.shape, m.dtype
    (torch.Size([4, 32, 48]), torch.bool)
    >>> mixed = masks.paste(images, m)
    >>> lam = masks.mask_fractions(m)
    >>> labels = masks.mix_labels(torch.tensor([0, 1, 2, 3]), lam, num_classes=5)
    >>> mixed.shape, labels.shape
    (torch.Size([4, 3, 32, 48]), torch.Size([4, 5]))
"""

from ._core.apply import apply, blend, mask_fractions, paste
from ._core.build import (
    boxes_to_masks,
    cell_bounds,
    centered_boxes,
    fourier_noise,
    grid_to_masks,
    grids_to_masks,
    saliency_peaks,
    spectral_residual_saliency,
    top_count_masks,
    top_k_cells,
)
from ._core.labels import mix_labels
from ._core.sample import (
    sample_beta,
    sample_box_sizes,
    sample_boxes,
    sample_counts,
    sample_fourier_spectra,
    sample_grids,
)

__all__ = [
    "apply",
    "blend",
    "boxes_to_masks",
    "cell_bounds",
    "centered_boxes",
    "fourier_noise",
    "grid_to_masks",
    "grids_to_masks",
    "mask_fractions",
    "mix_labels",
    "paste",
    "saliency_peaks",
    "sample_beta",
    "sample_box_sizes",
    "sample_boxes",
    "sample_counts",
    "sample_fourier_spectra",
    "sample_grids",
    "spectral_residual_saliency",
    "top_count_masks",
    "top_k_cells",
]
