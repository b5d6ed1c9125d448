"""CutMix (Yun et al., ICCV 2019) and the variants of its ablation study."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._base import MaskMix
from .._core._checks import _check_choice, _check_fits, _check_positive, _check_size_pair
from .._core.sample import sample_boxes

__all__ = ["CutMix"]

_LABEL_RULES = ("area", "one_hot", "complete")


class CutMix(MaskMix):
    """CutMix: paste a random box from the partner image; mix labels by the pasted pixel fraction.

    Paper: `CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features
    <https://arxiv.org/abs/1905.04899>`_ (Yun et al., ICCV 2019).

    A drop-in for :class:`torchvision.transforms.v2.CutMix`: same keyword arguments, same input
    structures (``(images, labels)``, the ``[images, labels]`` list a DataLoader yields, dicts
    found through ``labels_getter``), same pairing (sample ``i`` takes its box from sample
    ``i - 1``, so shuffle the batch). Output sample ``i`` gets the label
    ``(1 - lam_i) * y_i + lam_i * y_{i-1}`` where ``lam_i`` is exactly the fraction of its pixels
    that came from the partner, measured on the mask actually pasted (boxes clipped at the border
    included).

    Inputs: batched :class:`~torchvision.tv_tensors.Image` ``(B, C, H, W)``,
    :class:`~torchvision.tv_tensors.Video` ``(B, T, C, H, W)`` (the same box on every frame),
    :class:`~torchvision.tv_tensors.Mask` ``(B, H, W)``/``(B, 1, H, W)`` (segmentation masks, mixed
    with the same box) and plain tensors (the first plain tensor that is not the labels is the
    image batch when no Image/Video is given). Any dtype, device and memory format; outputs keep
    the input's type, dtype, device, shape and memory format.

    Where it differs from torchvision's (everything else is the same):

    * box sides are ``floor(sqrt(t) * W)`` by ``floor(sqrt(t) * H)``, torchvision's are even,
      ``2 * int(0.5 * sqrt(t) * W)``: about one point more pasted area on average at 32×32, none
      at 224×224 to a tenth of a point; λ is the exact pasted fraction either way;
    * ``labels_getter=None`` mixes the images without labels (torchvision raises), and
      segmentation ``tv_tensors.Mask`` leaves are mixed with the same box (torchvision raises);
    * ``p``, ``per_sample``, ``inplace``, ``label_smoothing``, ``generator`` and the ablation
      options below are additions; a batch of one is paired with itself, so it comes back
      unchanged with one-hot labels, as in torchvision;
    * PIL images, bounding boxes and keypoints raise :class:`~torchvision_mix.UnsupportedInputError`,
      both a ``TypeError`` and, like torchvision's, a ``ValueError``.

    The CutMix paper's ablation variants (each had a higher error than plain CutMix in the paper's
    ablation study), opt-in:

    * ``center="gaussian"``: box centres drawn around the image centre (standard deviation
      ``center_std`` times the side, 0.25 by default, rounded and clipped to the image);
    * ``box_size=16``: a fixed 16×16 box (the paper's fixed-size CutMix on CIFAR), no area draw;
    * scheduled CutMix: set ``p`` between epochs, rising linearly from 0 to 1 over training
      (``cutmix.p = epoch / epochs``);
    * ``label_rule="one_hot"``: the label of the larger portion (the partner's when more than
      half the pixels came from it); ``label_rule="complete"``: 0.5/0.5 for every mixed sample,
      whatever the area. These two deliberately break "label weight = pixel fraction".

    Args:
        alpha: Beta(α, α) concentration of the pasted area, > 0. 1.0 (uniform) by default.
        num_classes: number of classes. Needed for class-index labels ``(B,)``; optional for soft
            labels ``(B, K)``, where it must equal ``K``.
        labels_getter: ``"default"`` (item 1 of a tuple/list, or the ``labels``/``*label*`` key of a
            dict), a callable taking the transform's input and returning the labels, or ``None``
            when there are no labels (only the images and masks are mixed).
        p: probability of mixing the batch (with ``per_sample``, of mixing each sample). When a
            batch is not mixed its images come back as they are and its labels as one-hot.
        per_sample: an independent area, box (and ``p`` draw) for every sample, vectorised.
            Default ``False``: one box for the batch, as torchvision and the paper do.
        inplace: write the pasted pixels into the given tensors and return them. With one box per
            batch, only the pasted region is moved. Default ``False``: the caller's tensors are
            never modified.
        label_smoothing: ε in [0, 1): labels are smoothed (on-value ``1 - ε + ε/K``, off-value
            ``ε/K``) before mixing, as timm does.
        center: ``"uniform"`` (default) or ``"gaussian"`` box centres.
        center_std: spread of the Gaussian centre, a fraction of the side, > 0.
        box_size: ``None`` (default: the area is drawn) or a fixed box, an int or ``(h, w)``, at
            most the image size (checked on every batch, before anything changes).
        label_rule: ``"area"`` (default: the exact pasted fraction), ``"one_hot"`` or ``"complete"``.
        generator: a CPU :class:`torch.Generator` for reproducible mixing; ``None`` uses torch's
            global CPU generator. Random parameters are drawn on the CPU even for GPU batches (a
            few numbers per batch), so mixing never waits for the GPU.

    Example:
        >>> import torch
        >>> from torchvision_mix import CutMix
        >>> cutmix = CutMix(num_classes=10, generator=torch.Generator().manual_seed(0))
        >>> images, labels = torch.rand(8, 3, 32, 32), torch.randint(10, (8,))
        >>> images, labels = cutmix(images, labels)
        >>> images.shape, labels.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([8, 10]))
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
        center: str = "uniform",
        center_std: float = 0.25,
        box_size: int | tuple[int, int] | None = None,
        label_rule: str = "area",
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
        self.center = _check_choice("center", center, ("uniform", "gaussian"))
        self.center_std = _check_positive("center_std", center_std)
        self.box_size = None if box_size is None else _check_size_pair("box_size", box_size)
        self.label_rule = _check_choice("label_rule", label_rule, _LABEL_RULES)

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        if self.box_size is not None:
            _check_fits("box", self.box_size, batch.shape[-2], batch.shape[-1])

    def make_boxes(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        # Without per_sample one box (1, 4) for the batch: the base pastes only its region.
        size = batch.shape[0] if self.per_sample else min(batch.shape[0], 1)
        return sample_boxes(
            size,
            batch.shape[-2],
            batch.shape[-1],
            alpha=self.alpha,
            per_sample=self.per_sample,
            center=self.center,
            center_std=self.center_std,
            size=self.box_size,
            generator=self.generator,
        )

    def label_weights(self, lam: Tensor, applied: Tensor, **extras: Any) -> Tensor:
        if self.label_rule == "one_hot":
            return (lam > 0.5).to(lam.dtype)
        if self.label_rule == "complete":
            return applied.to(lam.dtype) * 0.5
        return lam
