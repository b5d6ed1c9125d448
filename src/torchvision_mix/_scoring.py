"""How a batch is scored by a feature extractor: the prepared copy it sees, the run, the heatmaps.

:class:`AttentionScorer` is what AttentiveCutMix asks for the heatmaps of a batch: the images
as float (integer pixels scaled to [0, 1]), the middle frame of videos, the resize to
``extractor_size``, ``preprocess``, channels_last, the extractor's dtype, autocast, eval mode,
no gradients, and the check that the map is not coarser than the grid. :class:`DefaultExtractor`
builds the default network once and remembers a failure.
"""

from __future__ import annotations

import collections.abc
import contextlib
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._weights import WeightsUnavailable, load_model, truncate
from .attention import FeatureExtractor, heatmaps

DEFAULT_MODEL = "resnet50"


def frames(batch: Tensor) -> Tensor:
    """The batch as a plain tensor of images: a video ``(B, T, C, H, W)`` gives its middle frame."""
    x = batch.as_subclass(Tensor)
    return x[:, x.shape[1] // 2] if x.ndim == 5 else x


def to_float(images: Tensor) -> Tensor:
    """Floating-point images as they are; integer ones scaled to [0, 1] by their dtype's maximum."""
    if images.is_floating_point():
        return images
    if images.dtype == torch.bool:
        return images.float()
    return images.float().div_(torch.iinfo(images.dtype).max)


class EvalMode:
    """Run a module in eval mode, then restore the mode its owner had set."""

    def __init__(self, module: Any) -> None:
        self.module = module if isinstance(module, nn.Module) else None
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        if self.module is not None:
            self.modes = [(m, m.training) for m in self.module.modules()]
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


class DefaultExtractor:
    """The default ImageNet ResNet-50 up to its last stage, built on first use; a failure is remembered.

    The remembered failure travels with pickling (a DataLoader worker's copy does not retry).
    """

    def __init__(self, weights: Any, weights_path: str | os.PathLike[str] | None, normalize: bool) -> None:
        self.weights, self.weights_path, self.normalize = weights, weights_path, normalize
        self.module: FeatureExtractor | None = None
        self.error: str | None = None

    def build(self) -> FeatureExtractor:
        net = load_model(DEFAULT_MODEL, weights=self.weights, weights_path=self.weights_path)
        return FeatureExtractor(truncate(net, None), normalize=self.normalize).eval()

    def get(self, device: torch.device) -> nn.Module:
        if self.error is not None:
            raise RuntimeError(self.error)
        if self.module is None:
            try:
                self.module = self.build()
            except Exception as error:
                self.error = self._explain(error)
                raise RuntimeError(self.error) from error
        param = next(self.module.parameters(), None)
        if param is not None and param.device != device:
            self.module.to(device)
        return self.module

    def _explain(self, error: Exception) -> str:
        if isinstance(error, WeightsUnavailable):
            reason = error.reworded(
                f"the default feature extractor of AttentiveCutMix ({DEFAULT_MODEL}, {error.weights})",
                f"pass AttentiveCutMix(weights_path='{DEFAULT_MODEL}.pth') (a state dict of torchvision's "
                f"{DEFAULT_MODEL}), or give precomputed attention: mix(images, labels, attention), maps (B, h, w)",
            )
        else:
            reason = f"AttentiveCutMix could not build its default feature extractor ({DEFAULT_MODEL}): {error}"
        return f"{reason} This failure is remembered: later batches raise it again; make a new AttentiveCutMix."


def _floating_parameter(module: Any) -> Tensor | None:
    """The first floating-point parameter of an ``nn.Module`` extractor (its compute dtype), if any."""
    if not isinstance(module, nn.Module):
        return None
    return next((p for p in module.parameters() if p.is_floating_point()), None)


def _size_text(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else str(tuple(size))


class AttentionScorer:
    """The heatmaps ``(B, g, g)`` of a batch's own samples, from a feature extractor.

    Args:
        grid_size: the side ``g`` of the grid the maps are pooled to.
        extractor_size: resize the extractor's copy of the batch to this ``(h, w)``, or ``None``.
        preprocess: applied to the float batch before the extractor, or ``None``.
        autocast: run the extractor under :func:`torch.autocast`.
        channels_last: give the extractor a channels_last batch.
        default: the extractor used when none is given to :meth:`heatmaps`.
    """

    def __init__(
        self,
        *,
        grid_size: int,
        extractor_size: tuple[int, int] | None,
        preprocess: Callable[[Tensor], Tensor] | None,
        autocast: bool,
        channels_last: bool,
        default: DefaultExtractor,
    ) -> None:
        self.grid_size, self.extractor_size, self.preprocess = grid_size, extractor_size, preprocess
        self.autocast, self.channels_last, self.default = autocast, channels_last, default
        self.range_warned = False

    def check(self, batch: Tensor, extractor: Callable[[Tensor], Any] | None) -> None:
        """Refuse, before anything changes, a batch the default RGB network cannot take."""
        channels = batch.shape[-3]
        if extractor is None and channels not in (1, 3):
            raise ValueError(
                f"The default feature extractor (an ImageNet ResNet-50) takes RGB or grey images, but got "
                f"{channels} channels (shape {tuple(batch.shape)}): pass a feature_extractor that takes them."
            )

    def heatmaps(self, batch: Tensor, extractor: Callable[[Tensor], Any] | None) -> Tensor:
        x = frames(batch)
        was_float = x.is_floating_point()
        x = to_float(x)
        if self.extractor_size is not None and tuple(x.shape[-2:]) != self.extractor_size:
            x = nn.functional.interpolate(x, size=self.extractor_size, mode="bilinear", align_corners=False)
        if self.preprocess is not None:
            x = self.preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if extractor is None:
            extractor = self.default.get(x.device)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)  # grey images, as RGB with R = G = B, for the RGB network
        else:
            _check_device(extractor, x.device)
        weight = _floating_parameter(extractor)
        if weight is not None and x.dtype != weight.dtype:
            x = x.to(weight.dtype)  # a float16/bfloat16/float64 batch meets a float32 module in its dtype
        if was_float or self.preprocess is not None:  # integer batches were scaled to [0, 1] here
            self._warn_if_normalised_twice(x, extractor)
        autocast: Any = contextlib.nullcontext()
        if self.autocast:
            autocast = torch.autocast(x.device.type, dtype=torch.float16 if x.device.type == "cuda" else torch.bfloat16)
        with torch.no_grad(), autocast, EvalMode(extractor):
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

    def _coarse_map_error(self, map_size: tuple[int, int], input_size: tuple[int, int], batch: Tensor) -> ValueError:
        g = self.grid_size
        height, width = batch.shape[-2], batch.shape[-1]
        need = (math.ceil(g * input_size[0] / map_size[0]), math.ceil(g * input_size[1] / map_size[1]))
        resized = "" if input_size == (height, width) else f" (resized to {input_size[0]}x{input_size[1]})"
        return ValueError(
            f"The feature extractor returned {map_size[0]}x{map_size[1]} feature maps for {height}x{width} "
            f"images{resized}, coarser than the {g}x{g} grid (its cells would copy one another): give it a larger "
            f"copy of the batch with AttentiveCutMix(extractor_size={_size_text(need)}, ...)."
        )

    def _warn_if_normalised_twice(self, x: Tensor, extractor: Any) -> None:
        """Warn once if a normalising extractor gets a batch clearly outside [0, 1] (CPU batches only: no sync)."""
        if self.range_warned or x.device.type != "cpu" or x.numel() == 0:
            return
        if not (isinstance(extractor, FeatureExtractor) and extractor.normalize):
            return
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo >= -0.5 and hi <= 1.5:
            return
        self.range_warned = True
        start = (
            "The feature extractor of AttentiveCutMix normalises with ImageNet statistics and expects images in "
            f"[0, 1], but got a batch in [{lo:.3g}, {hi:.3g}]"
        )
        if lo < -0.5:
            fix = "normalised already, they would be normalised twice: pass normalize=False"
        else:
            fix = "as floats in [0, 255] are: scale them to [0, 1] first, e.g. v2.ToDtype(torch.float32, scale=True)"
        warnings.warn(f"{start}; {fix} (warned once).", UserWarning, stacklevel=4)


def _check_device(extractor: Callable[[Tensor], Any], device: torch.device) -> None:
    if isinstance(extractor, nn.Module):
        param = next(extractor.parameters(), None)
        if param is not None and param.device != device:
            raise ValueError(
                f"The feature extractor's parameters are on {param.device} but the batch is on {device}: "
                "move it first, e.g. feature_extractor.to(device)."
            )
