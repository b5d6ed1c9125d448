"""SaliencyMix (Uddin et al., ICLR 2021): CutMix's box, centred on the donor's most salient pixel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

from .._base import MaskMix
from .._core._checks import _check_int, _check_positive, _is_real
from .._core.build import centered_boxes, saliency_peaks, spectral_residual_saliency
from .._core.sample import sample_box_sizes
from .._scoring import frames, to_float

__all__ = ["SaliencyMix"]


class SaliencyMix(MaskMix):
    """SaliencyMix: paste a CutMix box of the donor, centred on the donor's most salient pixel.

    Paper: `SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better Regularization
    <https://arxiv.org/abs/2006.01791>`_ (Uddin et al., ICLR 2021).

    For output sample ``i`` with donor ``j = i - 1`` (the pairing of :class:`CutMix`):

    1. the box sides are CutMix's, ``floor(sqrt(t) * H)`` by ``floor(sqrt(t) * W)`` with
       ``t ~ Beta(alpha, alpha)`` (:func:`torchvision_mix.masks.sample_box_sizes`);
    2. the saliency map of ``j`` is computed (by default the spectral residual of Hou & Zhang,
       :func:`torchvision_mix.masks.spectral_residual_saliency`, on the whole batch at once, on
       its device), and its maximum (the first in row-major order) is mapped to a pixel
       (:func:`torchvision_mix.masks.saliency_peaks`);
    3. the box is centred on that pixel and clipped to the image; the donor's pixels in it are
       pasted onto sample ``i`` at the same place;
    4. the label is ``(1 - lam) * y_i + lam * y_j``, ``lam`` the exact pasted fraction.

    The peak is a device value: the box is built on the device from it, never read back, so the
    mix does not synchronise a GPU with the host.

    Without ``per_sample``, one area ``t`` is drawn for the batch, but every sample's box is
    centred on its own donor's peak (the paper's rule, image by image), so the boxes differ in
    position (and in clipped size). With ``per_sample``, ``t`` (and ``p``) are drawn per sample.

    The paper uses OpenCV's static spectral-residual saliency; this package depends only on torch
    and torchvision, so the default is the same algorithm written in torch (see
    :func:`~torchvision_mix.masks.spectral_residual_saliency` for every step). Its maps are not
    bit-identical to OpenCV's. Pass ``saliency=`` to use another.

    Everything else (inputs, dtypes, devices, labels, ``p``, ``inplace``, ``label_smoothing``,
    ``generator``, errors) is as in :class:`CutMix`. Segmentation masks are mixed with the same
    boxes, but the saliency needs the images: a batch of masks alone is refused.

    Args:
        alpha: Beta(α, α) concentration of the box area, > 0 (1.0: uniform, as in the paper).
        saliency: ``None`` (the spectral residual) or a callable mapping the float batch
            ``(B, C, H, W)`` to maps ``(B, h, w)`` at any resolution (a cell of a smaller map is
            mapped to the pixel at its centre). It runs without gradients, on the batch's
            device. Integer batches reach it as float32 in [0, 1] (divided by their dtype's
            maximum); videos give their middle frame.
        saliency_width: the width of the default spectral-residual map (64, as Hou & Zhang).
        num_classes: as in :class:`CutMix`.
        labels_getter: as in :class:`CutMix`.
        p: as in :class:`CutMix`.
        per_sample: draw the area (and ``p``) per sample.
        inplace: as in :class:`CutMix`.
        label_smoothing: as in :class:`CutMix`.
        generator: as in :class:`CutMix`.

    Example:
        >>> import torch
        >>> from torchvision_mix import SaliencyMix
        >>> mix = SaliencyMix(num_classes=10, generator=torch.Generator().manual_seed(0))
        >>> images, labels = mix(torch.rand(8, 3, 64, 64), torch.randint(10, (8,)))
        >>> images.shape, labels.shape
        (torch.Size([8, 3, 64, 64]), torch.Size([8, 10]))
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        saliency: Callable[[Tensor], Tensor] | None = None,
        saliency_width: int = 64,
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
        self.alpha = _check_positive("alpha", alpha)
        if saliency is not None and not callable(saliency):
            raise TypeError(f"saliency must be a callable or None, but got {type(saliency).__name__}.")
        self.saliency = saliency
        self.saliency_width = _check_int("saliency_width", saliency_width)

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        if isinstance(batch, tv_tensors.Mask):
            raise TypeError(
                "SaliencyMix() needs images to compute the saliency, but got only segmentation masks; "
                "pass the images too."
            )

    def saliency_maps(self, batch: Tensor) -> Tensor:
        """The saliency maps ``(B, h, w)`` of the batch's own samples (each sample is some sample's donor)."""
        x = frames(batch)
        with torch.no_grad():
            if self.saliency is None:
                # The spectral residual is scale-invariant: integer pixels need no division by their maximum.
                return spectral_residual_saliency(x, width=self.saliency_width)
            x = to_float(x)
            maps = self.saliency(x)
        if not isinstance(maps, Tensor):
            raise TypeError(f"The saliency callable must return a tensor, but returned {type(maps).__name__}.")
        if maps.ndim != 3 or maps.shape[0] != x.shape[0] or 0 in maps.shape[1:]:
            raise ValueError(
                f"The saliency callable must return maps (B, h, w) with B={x.shape[0]}, "
                f"but returned shape {tuple(maps.shape)}."
            )
        if not _is_real(maps):
            raise TypeError(f"The saliency callable must return real maps, but returned dtype {maps.dtype}.")
        if maps.device != x.device:
            raise ValueError(f"The saliency callable returned maps on {maps.device}, but the batch is on {x.device}.")
        return maps

    def make_boxes(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        sizes = sample_box_sizes(
            size, height, width, alpha=self.alpha, per_sample=self.per_sample, generator=self.generator
        )
        peaks = saliency_peaks(self.saliency_maps(batch), height, width)
        donor_peaks = peaks.roll(1, 0)  # sample i's box is centred on its donor i - 1's peak
        return centered_boxes(donor_peaks, sizes, height, width)  # (B, 4) on the batch's device
