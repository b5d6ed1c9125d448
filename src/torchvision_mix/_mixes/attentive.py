"""Attentive CutMix (Walawalkar et al., ICASSP 2020): paste the donor's most attended grid cells."""

from __future__ import annotations

import collections.abc
import contextlib
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

from .._base import MaskMix
from .._core._checks import _check_bool, _check_concentration
from .._core.build import grid_to_masks, top_k_cells
from .._core.sample import sample_beta
from .._inputs import _is_pure_tensor

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


def _floating_parameter(module: Any) -> Tensor | None:
    """The first floating-point parameter of an ``nn.Module`` extractor (its compute dtype), if any."""
    if not isinstance(module, torch.nn.Module):
        return None
    return next((p for p in module.parameters() if p.is_floating_point()), None)


def _to_float(images: Tensor) -> Tensor:
    if images.is_floating_point():
        return images
    if images.dtype == torch.bool:
        return images.float()
    return images.float().div_(torch.iinfo(images.dtype).max)


def _check_extractor_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise ValueError(f"extractor_size must be None, an int or a pair (h, w) of ints >= 1, but got {size!r}.")
    return int(pair[0]), int(pair[1])


def _size_text(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else str(tuple(size))


class _EvalMode:
    """Run a module in eval mode, then restore the mode its owner had set."""

    def __init__(self, module: Any) -> None:
        self.module = module if isinstance(module, torch.nn.Module) else None
        self.modes: list[tuple[torch.nn.Module, bool]] = []

    def __enter__(self) -> None:
        if self.module is not None:
            self.modes = [(m, m.training) for m in self.module.modules()]
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


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
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"grid_size must be an int >= 1, but got {grid_size!r}.")
        cells = grid_size * grid_size
        if alpha is not None:
            alpha = _check_concentration("alpha", alpha)
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
            from ..attention import _resolve_weights

            _resolve_weights("resnet50", weights)  # an unknown name fails here, not at the first batch
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a callable or None, but got {type(preprocess).__name__}.")
        if not (attention_getter is None or callable(attention_getter) or attention_getter == "default"):
            raise ValueError(f"attention_getter must be 'default', a callable or None, but got {attention_getter!r}.")
        self.grid_size = grid_size
        self.top_k = top_k
        self.alpha = alpha
        self.autocast = _check_bool("autocast", autocast)
        self.channels_last = _check_bool("channels_last", channels_last)
        self.feature_extractor = feature_extractor
        self.extractor_size = _check_extractor_size(extractor_size)
        self.weights = weights
        self.weights_path = weights_path
        self.normalize = normalize
        self.preprocess = preprocess
        self._default_error: str | None = None  # why the default extractor could not be built
        self._range_warned = False  # the double-normalisation warning was given
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
            channels = batch.shape[-3]
            if self.feature_extractor is None and channels not in (1, 3):
                raise ValueError(
                    f"The default feature extractor (an ImageNet ResNet-50) takes RGB or grey images, but got "
                    f"{channels} channels (shape {tuple(batch.shape)}): pass a feature_extractor for them, or "
                    "precomputed attention."
                )
            return
        if not isinstance(attention, Tensor):
            raise TypeError(f"The attention must be a tensor, but got {type(attention).__name__}.")
        if attention.ndim not in (3, 4) or attention.shape[0] != batch.shape[0] or 0 in attention.shape:
            raise ValueError(
                f"The attention must be heatmaps (B, h, w) or feature maps (B, C, h, w) with B={batch.shape[0]}, "
                f"but got shape {tuple(attention.shape)}."
            )
        if attention.is_complex() or attention.dtype == torch.bool:
            raise TypeError(f"The attention must be real numbers, but got dtype {attention.dtype}.")
        # NaN would leave the top-k undefined. Read on CPU tensors only: no device synchronisation.
        reads = attention.device.type == "cpu" and not torch.compiler.is_compiling()
        if reads and attention.is_floating_point() and bool(attention.isnan().any()):
            raise ValueError("The attention holds NaN, which has no rank among the cells: replace it first.")
        ah, aw = attention.shape[-2], attention.shape[-1]
        if ah < self.grid_size or aw < self.grid_size:
            raise ValueError(
                f"The precomputed attention maps are {ah}x{aw}, coarser than the {self.grid_size}x{self.grid_size} "
                "grid: stretched to the grid, its cells would copy one another (a 1x1 map would give every sample "
                "the same cells). Compute them on larger inputs (e.g. images resized to 224 for an ImageNet "
                f"ResNet), or use a grid_size of at most {min(ah, aw)}."
            )

    # --- attention ---------------------------------------------------------------------------

    def _extractor(self, device: torch.device) -> Callable[[Tensor], Any]:
        if self.feature_extractor is not None:
            module = self.feature_extractor
            if isinstance(module, torch.nn.Module):
                param = next(module.parameters(), None)
                if param is not None and param.device != device:
                    raise ValueError(
                        f"The feature extractor's parameters are on {param.device} but the batch is on {device}: "
                        "move it first, e.g. feature_extractor.to(device)."
                    )
            return module
        default = getattr(self, "_default_extractor", None)
        if default is None:
            default = self._build_default_extractor()
            self._default_extractor = default
        param = next(default.parameters(), None)
        if param is not None and param.device != device:
            default.to(device)
        return default

    def _build_default_extractor(self) -> torch.nn.Module:
        """The default ResNet-50, built once; a failure is remembered and raised again without a retry."""
        if self._default_error is not None:
            raise RuntimeError(self._default_error)
        from .. import attention

        try:
            return attention._build(
                "resnet50",
                weights=self.weights,
                weights_path=self.weights_path,
                normalize=self.normalize,
                owner="AttentiveCutMix",
            )
        except Exception as error:
            reason = str(error)
            if not isinstance(error, attention._WeightsUnavailable):
                reason = f"AttentiveCutMix could not build its default feature extractor (resnet50): {reason}"
            self._default_error = (
                f"{reason} This failure is remembered: later batches raise this error again without a new "
                "attempt; make a new AttentiveCutMix once it is fixed."
            )
            raise RuntimeError(self._default_error) from error

    def _warn_if_normalised_twice(self, x: Tensor, extractor: Any) -> None:
        """Warn once if a normalising extractor gets a batch clearly outside [0, 1] (CPU batches only: no sync)."""
        from ..attention import FeatureExtractor

        if self._range_warned or x.device.type != "cpu" or x.numel() == 0:
            return
        if not (isinstance(extractor, FeatureExtractor) and extractor.normalize):
            return
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo < -0.5 or hi > 1.5:
            self._range_warned = True
            warnings.warn(
                "The feature extractor of AttentiveCutMix normalises with ImageNet statistics and expects "
                f"images in [0, 1], but got a batch in [{lo:.3g}, {hi:.3g}]. If the pipeline already applied "
                "v2.Normalize, the images are normalised twice: pass normalize=False (to AttentiveCutMix for its "
                "default extractor, to attention.feature_extractor for your own). If they are floats in [0, 255], "
                "scale them to [0, 1] first. (Checked on CPU batches only; warned once per transform.)",
                UserWarning,
                stacklevel=2,
            )

    def _coarse_map_error(self, map_size: tuple[int, int], input_size: tuple[int, int], batch: Tensor) -> ValueError:
        g = self.grid_size
        height, width = batch.shape[-2], batch.shape[-1]
        need = (
            math.ceil(g * input_size[0] / max(map_size[0], 1)),
            math.ceil(g * input_size[1] / max(map_size[1], 1)),
        )
        resized = "" if input_size == (height, width) else f" (resized to {input_size[0]}x{input_size[1]})"
        smaller = f"use a grid_size of at most {min(map_size)}, " if min(map_size) >= 1 else ""
        return ValueError(
            f"The feature extractor returned {map_size[0]}x{map_size[1]} feature maps for {height}x{width} "
            f"images{resized}, coarser than the {g}x{g} grid: stretched to the grid, its cells would copy one "
            "another (a 1x1 map is constant, and every sample would paste the same first cells). Compute the "
            f"attention on a resized copy of the batch: AttentiveCutMix(extractor_size={_size_text(need)}, ...) "
            "(224 for 32x32 CIFAR images and an ImageNet ResNet; the cells still map onto the original images), "
            f"or {smaller}or an extractor with a finer map (an earlier layer)."
        )

    def _heatmaps(self, batch: Tensor) -> Tensor:
        from ..attention import heatmaps

        x = batch.as_subclass(Tensor)
        if x.ndim == 5:
            x = x[:, x.shape[1] // 2]
        was_float = x.is_floating_point()
        x = _to_float(x)
        if self.extractor_size is not None and tuple(x.shape[-2:]) != self.extractor_size:
            x = torch.nn.functional.interpolate(
                x, size=self.extractor_size, mode="bilinear", align_corners=False, antialias=False
            )
        if self.preprocess is not None:
            x = self.preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        extractor = self._extractor(x.device)
        if self.feature_extractor is None and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey images, as RGB with R = G = B, for the RGB network
        weight = _floating_parameter(extractor)
        if weight is not None and x.dtype != weight.dtype:
            x = x.to(weight.dtype)  # a float16/bfloat16/float64 batch meets a float32 module in its dtype
        if was_float or self.preprocess is not None:  # integer batches were scaled to [0, 1] here
            self._warn_if_normalised_twice(x, extractor)
        autocast: Any = contextlib.nullcontext()
        if self.autocast:
            autocast = torch.autocast(x.device.type, dtype=torch.float16 if x.device.type == "cuda" else torch.bfloat16)
        with torch.no_grad(), autocast, _EvalMode(extractor):
            features = extractor(x)
        if isinstance(features, collections.abc.Mapping) and len(features) == 1:
            (features,) = features.values()
        if not isinstance(features, Tensor):
            raise TypeError(f"The feature extractor must return a tensor, but returned {type(features).__name__}.")
        if features.ndim != 4 or features.shape[0] != x.shape[0]:
            raise ValueError(
                f"The feature extractor must return feature maps (B, C, h, w) with B={x.shape[0]}, "
                f"but returned shape {tuple(features.shape)}."
            )
        map_size = (features.shape[-2], features.shape[-1])
        if min(map_size) < self.grid_size:  # shapes only: no sync
            raise self._coarse_map_error(map_size, (x.shape[-2], x.shape[-1]), batch)
        return heatmaps(features.float(), self.grid_size)

    def _draw_top_k(self, size: int) -> int | Tensor:
        if self.top_k is not None:
            return self.top_k
        assert self.alpha is not None
        cells = self.grid_size * self.grid_size
        t = sample_beta(size if self.per_sample else 1, alpha=self.alpha, generator=self.generator)
        k = (t * cells).round().clamp(1, cells).long()
        return k if self.per_sample else int(k[0])

    def make_masks(self, batch: Tensor, attention: Tensor | None = None, **side_inputs: Any) -> Tensor:
        from .. import attention as _attention

        height, width = batch.shape[-2], batch.shape[-1]
        top_k = self._draw_top_k(batch.shape[0])
        if attention is None:
            heat = self._heatmaps(batch)
        else:
            heat = _attention.heatmaps(attention.to(batch.device, non_blocking=True), self.grid_size)
        donor_heat = heat.roll(1, 0)  # sample i receives the cells of its donor i - 1
        return grid_to_masks(top_k_cells(donor_heat, top_k), height, width)
