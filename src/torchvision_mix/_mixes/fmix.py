"""FMix (Harris et al., 2020): paste the highest pixels of low-frequency Fourier noise."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._base import MaskMix
from .._core._checks import _check_positive
from .._core.build import fourier_noise, top_count_masks
from .._core.sample import sample_counts, sample_fourier_spectra

__all__ = ["FMix"]


class FMix(MaskMix):
    """FMix: paste the partner's pixels where a random low-frequency Fourier noise is highest.

    Paper: `FMix: Enhancing Mixed Sample Data Augmentation <https://arxiv.org/abs/2002.12047>`_
    (Harris et al., 2020).

    For every mask:

    1. a complex Gaussian spectrum (:func:`torchvision_mix.masks.sample_fourier_spectra`) is
       scaled by ``1 / max(f, 1 / max(H, W)) ** decay_power``, ``f`` the frequency magnitude,
       and transformed back to an ``H x W`` real noise at full resolution
       (:func:`torchvision_mix.masks.fourier_noise`);
    2. the pasted count is ``round(t * H * W)``, ``t ~ Beta(alpha, alpha)``
       (:func:`torchvision_mix.masks.sample_counts`);
    3. exactly that many pixels, the highest of the noise, are taken from the partner (ties: the
       lower row-major index first; :func:`torchvision_mix.masks.top_count_masks`), so the label
       weight ``lam`` is exactly ``count / (H * W)``.

    The random spectrum is drawn on the CPU from ``generator``; the filter, the inverse FFT and
    the selection run on the batch's device, without a host synchronisation off the CPU.

    Without ``per_sample``, one mask for the batch (as the FMix reference implementation draws
    one per batch); with ``per_sample``, a spectrum and a count (and ``p``) per sample,
    vectorised. Everything else (inputs, dtypes, devices, labels, ``p``, ``inplace``,
    ``label_smoothing``, ``generator``, errors) is as in :class:`CutMix`; segmentation masks are
    mixed with the same mask.

    The reference implementation's ``max_soft`` option (soft mask edges, which blend pixels) is
    not offered: masks here are binary, as in the paper's experiments.

    Args:
        alpha: Beta(α, α) concentration of the pasted fraction, > 0 (1.0, as in the paper).
        decay_power: δ, finite and > 0: how fast the spectrum decays with the frequency; larger
            is smoother, with fewer and rounder blobs (3.0, as in the paper).
        num_classes: as in :class:`CutMix`.
        labels_getter: as in :class:`CutMix`.
        p: as in :class:`CutMix`.
        per_sample: a mask (spectrum, count and ``p``) per sample.
        inplace: as in :class:`CutMix`.
        label_smoothing: as in :class:`CutMix`.
        generator: as in :class:`CutMix`.

    Example:
        >>> import torch
        >>> from torchvision_mix import FMix
        >>> mix = FMix(num_classes=10, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> images, labels = mix(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
        >>> partner = torch.tensor([3, 0, 1, 2])  # sample i - 1
        >>> (labels[torch.arange(4), partner] * 1024).tolist()  # pixels pasted, of 32 x 32
        [1004.0, 697.0, 18.0, 339.0]
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        decay_power: float = 3.0,
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
        self.decay_power = _check_positive("decay_power", decay_power)

    def _masks(self, size: int, height: int, width: int, device: torch.device) -> Tensor:
        """``size`` independent masks (the draws: spectra, then counts)."""
        spectra = sample_fourier_spectra(size, height, width, generator=self.generator)
        counts = sample_counts(size, height * width, alpha=self.alpha, per_sample=True, generator=self.generator)
        noise = fourier_noise(spectra, height, width, decay_power=self.decay_power, device=device, inplace=True)
        return top_count_masks(noise, counts)

    def make_masks(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        # Without per_sample one mask (1, H, W) for the batch: the base measures it once.
        return self._masks(size if self.per_sample else min(size, 1), height, width, batch.device)
