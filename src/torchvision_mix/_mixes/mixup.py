"""MixUp (Zhang et al., ICLR 2018): blend every sample with its partner by one weight."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._base import BlendMix
from .._core._checks import _check_positive
from .._core.sample import sample_beta

__all__ = ["MixUp"]


class MixUp(BlendMix):
    """MixUp: blend each image with its partner, ``(1 - lam) * x_i + lam * x_{i-1}``, and the labels alike.

    Paper: `mixup: Beyond Empirical Risk Minimization <https://arxiv.org/abs/1710.09412>`_
    (Zhang et al., ICLR 2018).

    A drop-in for :class:`torchvision.transforms.v2.MixUp`: same keyword arguments, same input
    structures, same pairing (sample ``i`` is blended with sample ``i - 1``, so shuffle the
    batch), the partner's weight ``lam ~ Beta(alpha, alpha)``. Added: ``per_sample`` (a ``lam``
    per sample, vectorised), ``p``, ``generator``, ``label_smoothing``, ``inplace``; odd batches
    and batch 1 (paired with itself: unchanged); every image dtype.

    The output is written once (:func:`torch.lerp` into a new tensor, or into the input with
    ``inplace``), computed in float32 (float64 for float64 images). Integer images (uint8, which
    torchvision refuses) are rounded to the nearest integer, so a pixel is at most half a grey
    level from the exact blend, and float16/bfloat16 ones are rounded to their dtype; the label
    uses ``lam`` as drawn (rounded to float32), not a value measured back from the pixels.

    Segmentation :class:`~torchvision.tv_tensors.Mask` leaves hold class ids, which cannot be
    blended: they raise :class:`~torchvision_mix.UnsupportedInputError` (mix them with a mask
    mix such as :class:`~torchvision_mix.CutMix`).

    Args:
        alpha: Beta(α, α) concentration of the partner's weight, > 0. 1.0 (uniform) by default;
            0.2 to 0.4 in the paper's ImageNet runs, 0.8 in DeiT/timm recipes.
        num_classes: number of classes; needed for class-index labels ``(B,)``, optional for soft
            labels ``(B, K)`` (then it must equal ``K``).
        labels_getter: as in :class:`~torchvision_mix.CutMix`.
        p: probability of mixing the batch (each sample with ``per_sample``).
        per_sample: an independent ``lam`` (and ``p`` draw) for every sample.
        inplace: write into the given tensor (through one temporary copy of the partners).
        label_smoothing: ε in [0, 1), applied to the labels before mixing.
        generator: a CPU :class:`torch.Generator` for reproducible mixing.

    Example:
        >>> import torch
        >>> from torchvision_mix import MixUp
        >>> mixup = MixUp(num_classes=3, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> images, labels = mixup(torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1]))
        >>> images.shape, labels.shape
        (torch.Size([5, 3, 8, 8]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
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

    def make_weights(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        # One weight (1,) for the batch unless per_sample.
        size = batch.shape[0] if self.per_sample else 1
        return sample_beta(size, alpha=self.alpha, generator=self.generator)
