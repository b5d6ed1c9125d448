"""Attentive CutMix (Walawalkar et al., ICASSP 2020): paste the donor's most attended grid cells."""

from __future__ import annotations

import collections.abc
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

from .._base import MaskMix
from .._core._checks import (
    _check_bool,
    _check_choice,
    _check_int,
    _check_positive,
    _check_size_pair,
    _is_real,
    _reads_values,
)
from .._core.build import cell_bounds, grid_to_masks, top_k_cells
from .._core.sample import sample_beta
from .._inputs import _is_pure_tensor
from .._scoring import AttentionScorer, DefaultExtractor
from .._weights import resolve_weights
from ..attention import heatmaps

__all__ = ["AttentiveCutMix"]


def _default_attention_getter(inputs: Any) -> Tensor | None:
    """The third plain tensor of ``(images, labels, attention)``, else the value of a dict key
    containing 'attention' or 'heatmap' (case-insensitive), if any."""
    if isinstance(inputs, (tuple, list)) and len(inputs) >= 3 and _is_pure_tensor(inputs[2]):
        return inputs[2]
    if isinstance(inputs, (tuple, list)) and len(inputs) >= 2:
        inputs = inputs[1]
    if not isinstance(inputs, collections.abc.Mapping):
        return None
    for key in inputs:
        if isinstance(key, str) and ("attention" in key.lower() or "heatmap" in key.lower()):
            value: Tensor | None = inputs[key]
            return value
    return None


class AttentiveCutMix(MaskMix):
    """Attentive CutMix: paste the donor's most attended grid cells, chosen by a pretrained CNN.

    Paper: `Attentive CutMix: An Enhanced Data Augmentation Approach for Deep Learning Based Image
    Classification <https://arxiv.org/abs/2003.13048>`_ (Walawalkar et al., ICASSP 2020).

    For output sample ``i`` with donor ``j = i - 1`` (the pairing of :class:`CutMix`):

    1. the feature extractor runs once on the whole batch (every sample is some sample's donor);
       the heatmap of ``j`` is the mean over channels of its feature map, adaptively average-pooled
       to ``grid_size x grid_size`` when the map has another size;
    2. the donor's ``top_k`` highest cells are chosen (ties: the lower row-major index wins);
    3. the cells are mapped to pixel rectangles that tile the image exactly, for any ``H`` and
       ``W`` (:func:`torchvision_mix.masks.cell_bounds`);
    4. the donor's pixels in those cells are pasted onto sample ``i`` at the same places;
    5. the label is ``(1 - lam) * y_i + lam * y_j`` with ``lam`` the exact pasted fraction (6/49
       for 224×224, grid 7, ``top_k`` 6).

    Everything else (inputs, dtypes, devices, labels, ``p``, ``per_sample``, ``inplace``,
    ``label_smoothing``, ``generator``, errors) is as in :class:`CutMix`.

    Args:
        feature_extractor: an ``nn.Module`` or callable mapping a float batch ``(B, C, H, W)`` to
            feature maps ``(B, C', h, w)``, with ``h`` and ``w`` at least ``grid_size`` (a
            coarser map raises a ``ValueError``: see ``extractor_size``). It runs once per batch,
            without gradients, on the batch's device (a module must already be there); a module
            is run in eval mode and then left in the mode it had. ``None`` (default): the paper's
            torchvision ImageNet-pretrained ResNet-50 up to its last stage, built on first use by
            :func:`torchvision_mix.attention.feature_extractor` from ``weights``,
            ``weights_path`` and ``normalize``. If it cannot be built (offline), the
            ``RuntimeError`` says what to do; the failure is remembered, and later batches raise
            the same error without trying again. It takes RGB images; grey ones (1 channel)
            reach it with the channel repeated, other channel counts raise a ``ValueError``.
        extractor_size: compute the attention on a copy of the batch resized to this size (an int
            or ``(h, w)``; bilinear, no antialiasing), e.g. ``224`` for 32×32 CIFAR images and an
            ImageNet ResNet, whose 1×1 map would be coarser than the grid. Only the extractor
            sees the copy: the cells are mapped onto the original images. ``None`` (default): the
            batch as it is.
        weights: weights of the default ResNet-50 (``feature_extractor=None`` only): ``"DEFAULT"``,
            a ``torchvision.models.ResNet50_Weights`` member or its name, or ``None`` (untrained).
        weights_path: a local state dict of torchvision's ResNet-50 to load instead of
            downloading (offline machines; ``feature_extractor=None`` only).
        normalize: whether the default extractor applies the ImageNet normalisation itself
            (``feature_extractor=None`` only). Pass ``False`` when the images are normalised
            already (a ``v2.Normalize`` earlier in the pipeline). A normalising extractor that
            gets a floating-point CPU batch clearly outside [0, 1] warns once per transform
            (batches on other devices are not read, so as not to wait on them).
        grid_size: cells per side of the grid, >= 1 and at most the image's height and width.
        top_k: cells pasted per sample, in ``[1, grid_size ** 2]``. ``None`` together with
            ``alpha``: draw it (the "AttentiveMix+" variant).
        alpha: when given, ``top_k`` is drawn as ``round(t * grid_size ** 2)`` clipped to
            ``[1, grid_size ** 2]``, ``t ~ Beta(alpha, alpha)``: once per batch, or once per
            sample with ``per_sample``.
        preprocess: a callable applied to the float batch before the feature extractor (e.g.
            ``v2.Normalize(mean, std)`` for a custom ImageNet backbone). Floating-point batches
            reach it unchanged; integer batches are first scaled to float32 in [0, 1] (divided by
            their dtype's maximum, 255 for uint8). Videos give their middle frame.
        attention_getter: where precomputed attention comes from, so no forward pass runs:
            ``"default"`` takes the third argument of ``mix(images, labels, attention)`` when it
            is a plain tensor, else the value of a dict key containing ``attention`` or
            ``heatmap`` (case-insensitive) when there is one; a callable gets the transform's input and
            returns a tensor or ``None``; ``None`` never looks. Attention is heatmaps
            ``(B, h, w)`` or feature maps ``(B, C, h, w)`` of the samples themselves (not of
            their donors), pooled to the grid like the extractor's output; it is passed through
            unchanged. CPU attention holding ``NaN`` is refused (device tensors are not read).
        autocast: run the feature extractor under :func:`torch.autocast` (bfloat16 on CPU,
            float16 on CUDA).
        channels_last: give the feature extractor a channels_last batch (faster convolutions).
        label_rule: ``"area"`` (default): the partner's label weight is the exact pasted pixel
            fraction, as in the paper. ``"attention"``: it is the share of the donor's attention
            that was pasted, ``sum over pasted cells of max(heat, 0) * cell area`` over the same
            sum over all cells (label mixing by attention, as SnapMix and TransMix do): pasting
            most of a small object's attention gives most of its label, whatever the area. It
            deliberately breaks "label weight = pixel fraction", like CutMix's ``"one_hot"``; a
            donor whose attention has no positive mass gets the area.
        num_classes: as in :class:`CutMix`.
        labels_getter: as in :class:`CutMix`.
        p: as in :class:`CutMix`; a batch that is not mixed costs no forward pass.
        per_sample: draw ``p`` (and ``top_k`` with ``alpha``) per sample.
        inplace: as in :class:`CutMix`.
        label_smoothing: as in :class:`CutMix`.
        generator: as in :class:`CutMix`.

    Example:
        >>> import torch
        >>> from torchvision_mix import AttentiveCutMix, attention
        >>> extractor = attention.feature_extractor("resnet18", weights=None)  # offline example
        >>> mix = AttentiveCutMix(feature_extractor=extractor, num_classes=10)
        >>> images, labels = torch.rand(4, 3, 224, 224), torch.tensor([0, 1, 2, 3])
        >>> images, labels = mix(images, labels)
        >>> labels.max(dim=1).values.mul(49).round().tolist()  # each keeps 43 of 49 cells
        [43.0, 43.0, 43.0, 43.0]
    """

    def __init__(
        self,
        *,
        feature_extractor: Callable[[Tensor], Any] | None = None,
        extractor_size: int | tuple[int, int] | None = None,
        weights: Any = "DEFAULT",
        weights_path: str | os.PathLike[str] | None = None,
        normalize: bool = True,
        grid_size: int = 7,
        top_k: int | None = 6,
        alpha: float | None = None,
        preprocess: Callable[[Tensor], Tensor] | None = None,
        attention_getter: Any = "default",
        autocast: bool = False,
        channels_last: bool = False,
        label_rule: str = "area",
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
        _check_int("grid_size", grid_size)
        cells = grid_size * grid_size
        if alpha is not None:
            alpha = _check_positive("alpha", alpha)
            if top_k is not None:
                raise ValueError(
                    f"Got both top_k={top_k!r} and alpha={alpha!r}: "
                    "pass top_k=None to draw top_k from Beta(alpha, alpha)."
                )
        elif isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= cells:
            raise ValueError(f"top_k must be an int in [1, {cells}] (grid_size ** 2), but got {top_k!r}.")
        if feature_extractor is not None and not callable(feature_extractor):
            raise TypeError(
                "feature_extractor must be an nn.Module, a callable or None, "
                f"but got {type(feature_extractor).__name__}."
            )
        default_weights = isinstance(weights, str) and weights == "DEFAULT"
        if feature_extractor is not None and not (default_weights and weights_path is None and normalize is True):
            raise ValueError(
                "weights, weights_path and normalize configure the default feature extractor "
                "(feature_extractor=None); set them on your own extractor instead, e.g. "
                "attention.feature_extractor('resnet50', weights_path='resnet50.pth', normalize=False)."
            )
        if weights_path is not None and not isinstance(weights_path, (str, os.PathLike)):
            raise TypeError(f"weights_path must be a path or None, but got {type(weights_path).__name__}.")
        _check_bool("normalize", normalize)
        if feature_extractor is None and weights is not None and weights_path is None:
            resolve_weights("resnet50", weights)  # an unknown name fails here, not at the first batch
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a callable or None, but got {type(preprocess).__name__}.")
        if not (attention_getter is None or callable(attention_getter) or attention_getter == "default"):
            raise ValueError(f"attention_getter must be 'default', a callable or None, but got {attention_getter!r}.")
        self.grid_size = grid_size
        self.top_k = top_k
        self.alpha = alpha
        self.label_rule = _check_choice("label_rule", label_rule, ("area", "attention"))
        self.autocast = _check_bool("autocast", autocast)
        self.channels_last = _check_bool("channels_last", channels_last)
        self.feature_extractor = feature_extractor
        self.extractor_size = None if extractor_size is None else _check_size_pair("extractor_size", extractor_size)
        self.weights = weights
        self.weights_path = weights_path
        self.normalize = normalize
        self.preprocess = preprocess
        self._scorer = AttentionScorer(
            grid_size=grid_size,
            extractor_size=self.extractor_size,
            preprocess=preprocess,
            autocast=autocast,
            channels_last=channels_last,
            default=DefaultExtractor(weights, weights_path, normalize),
        )
        self._attention_getter = _default_attention_getter if attention_getter == "default" else attention_getter

    # --- side inputs -------------------------------------------------------------------------

    def get_side_inputs(self, inputs: Any) -> dict[str, Any]:
        attention = None if self._attention_getter is None else self._attention_getter(inputs)
        return {"attention": attention}

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        height, width = batch.shape[-2], batch.shape[-1]
        if self.grid_size > height or self.grid_size > width:
            raise ValueError(
                f"The grid ({self.grid_size}x{self.grid_size}) is larger than the images ({height}x{width}): "
                "some cells would hold no pixel. Use a smaller grid_size."
            )
        attention = side_inputs.get("attention")
        if attention is None:
            if isinstance(batch, tv_tensors.Mask):
                raise TypeError(
                    "AttentiveCutMix() needs images to compute attention, but got only segmentation masks; "
                    "pass the images too, or precomputed attention."
                )
            self._scorer.check(batch, self.feature_extractor)
            return
        if not isinstance(attention, Tensor):
            raise TypeError(f"The attention must be a tensor, but got {type(attention).__name__}.")
        if attention.ndim not in (3, 4) or attention.shape[0] != batch.shape[0] or 0 in attention.shape:
            raise ValueError(
                f"The attention must be heatmaps (B, h, w) or feature maps (B, C, h, w) with B={batch.shape[0]}, "
                f"but got shape {tuple(attention.shape)}."
            )
        if not _is_real(attention):
            raise TypeError(f"The attention must be real numbers, but got dtype {attention.dtype}.")
        # NaN would leave the top-k undefined. Read on CPU tensors only: no device synchronisation.
        if _reads_values(attention) and attention.is_floating_point() and bool(attention.isnan().any()):
            raise ValueError("The attention holds NaN, which has no rank among the cells: replace it first.")
        ah, aw = attention.shape[-2], attention.shape[-1]
        if ah < self.grid_size or aw < self.grid_size:
            raise ValueError(
                f"The precomputed attention maps are {ah}x{aw}, coarser than the {self.grid_size}x{self.grid_size} "
                "grid (its cells would copy one another): compute them on larger inputs, e.g. images resized to 224 "
                "for an ImageNet ResNet."
            )

    # --- the mask and its label rule -----------------------------------------------------------

    def _draw_top_k(self, size: int) -> int | Tensor:
        if self.top_k is not None:
            return self.top_k
        assert self.alpha is not None
        cells = self.grid_size * self.grid_size
        t = sample_beta(size if self.per_sample else 1, alpha=self.alpha, generator=self.generator)
        k = (t * cells).round().clamp(1, cells).long()
        return k if self.per_sample else int(k[0])

    def make_masks(self, batch: Tensor, attention: Tensor | None = None, **side_inputs: Any) -> dict[str, Any]:
        height, width = batch.shape[-2], batch.shape[-1]
        top_k = self._draw_top_k(batch.shape[0])
        if attention is None:
            heat = self._scorer.heatmaps(batch, self.feature_extractor)
        else:
            heat = heatmaps(attention.to(batch.device, non_blocking=True), self.grid_size)
        donor_heat = heat.roll(1, 0)  # sample i receives the cells of its donor i - 1
        cells = top_k_cells(donor_heat, top_k)
        out: dict[str, Any] = {"masks": grid_to_masks(cells, height, width)}
        if self.label_rule == "attention":
            out["attention_share"] = _pasted_share(donor_heat, cells, height, width)
        return out

    def label_weights(self, lam: Tensor, applied: Tensor, **extras: Any) -> Tensor:
        share = extras.get("attention_share")
        if share is None:
            return lam
        # A donor with no positive attention (or NaN) has no share to give: its area stands in.
        return torch.where(share.isfinite(), share.to(lam.dtype), lam)


def _pasted_share(heat: Tensor, cells: Tensor, height: int, width: int) -> Tensor:
    """The share of each donor's attention mass, ``max(heat, 0)`` times the cell's pixel area, in the pasted cells."""
    g = heat.shape[-1]
    rows = cell_bounds(height, g).diff().to(heat.device, torch.float64)
    cols = cell_bounds(width, g).diff().to(heat.device, torch.float64)
    mass = heat.double().clamp_min(0) * (rows[:, None] * cols[None, :])
    return (mass * cells).sum(dim=(1, 2)) / mass.sum(dim=(1, 2))  # 0 / 0 = NaN: no mass
