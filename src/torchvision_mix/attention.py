"""Feature extractors and heatmaps for Attentive CutMix.

Attentive CutMix scores the cells of a grid on the donor image with the final feature map of a
pretrained CNN: the heatmap is the mean over channels of that map, pooled to the grid.

Example:
    >>> import torch
    >>> from torchvision_mix import attention
    >>> extractor = attention.feature_extractor("resnet18", weights=None)  # no download
    >>> features = extractor(torch.rand(2, 3, 224, 224))
    >>> features.shape
    torch.Size([2, 512, 7, 7])
    >>> attention.heatmaps(features, grid_size=7).shape
    torch.Size([2, 7, 7])
"""

from __future__ import annotations

import collections.abc
import os
from typing import Any

import torch
from torch import Tensor, nn

from ._core._checks import _check_bool, _describe
from ._weights import WeightsUnavailable, load_model, truncate

__all__ = ["FeatureExtractor", "feature_extractor", "heatmaps"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractor(nn.Module):
    """A backbone that maps images ``(B, 3, H, W)`` in [0, 1] to feature maps ``(B, C, h, w)``.

    Made by :func:`feature_extractor`. With ``normalize``, it first applies the ImageNet mean and
    standard deviation that torchvision's pretrained classifiers expect.

    Args:
        backbone: a module returning a 4-D feature map, or a single-entry dict of one.
        normalize: apply ImageNet normalisation to the input first.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, backbone: nn.Module, *, normalize: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalize = _check_bool("normalize", normalize)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if self.normalize:
            images = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out = self.backbone(images)
        if isinstance(out, collections.abc.Mapping):
            (out,) = out.values()
        return out


def feature_extractor(
    model: str | nn.Module = "resnet50",
    *,
    weights: Any = "DEFAULT",
    weights_path: str | os.PathLike[str] | None = None,
    layer: str | None = None,
    normalize: bool = True,
) -> FeatureExtractor:
    """Turn a torchvision classification model into a feature extractor for Attentive CutMix.

    The paper's choice is the default: torchvision's ImageNet-pretrained ResNet-50, cut after its
    last convolutional stage (a 7×7 map for a 224×224 input). The result is in eval mode.

    Args:
        model: a model name known to :func:`torchvision.models.get_model` (``"resnet50"``,
            ``"resnet18"``, ``"vgg16"``, ``"efficientnet_b0"``, ...) or a model instance (used as
            it is; ``weights`` and ``weights_path`` are then ignored).
        weights: torchvision weights for a named model: ``"DEFAULT"``, a weights enum or its name,
            or ``None`` for random initialisation (no download).
        weights_path: a local state dict to load instead of downloading (for offline machines).
        layer: the node whose output is the feature map; by default the last convolutional stage
            (``layer4`` of ResNets, ``features`` of most other torchvision classifiers).
        normalize: apply the ImageNet normalisation first, so the extractor takes images in [0, 1].
            Pass ``False`` when the images are normalised already (a pipeline with
            ``v2.Normalize``): normalising twice shifts every input far out of the range the
            network was trained on, and nothing fails. :class:`~torchvision_mix.AttentiveCutMix`
            warns once when a normalising extractor gets CPU batches clearly outside [0, 1].

    Raises:
        RuntimeError: when pretrained weights cannot be downloaded; the message says how to pass
            a local file or a model instead.
    """
    try:
        net = load_model(model, weights=weights, weights_path=weights_path)
    except WeightsUnavailable as error:
        fix = (
            "pass feature_extractor(..., weights_path='file.pth') (a state dict) or weights=None for an untrained "
            "network"
        )
        raise WeightsUnavailable(error.model, error.weights, error.reason, fix) from None
    return FeatureExtractor(truncate(net, layer), normalize=normalize).eval()


def heatmaps(features: Tensor, grid_size: int | tuple[int, int] = 7) -> Tensor:
    """Attention heatmaps ``(B, g, g)``: the channel mean of feature maps ``(B, C, h, w)``, pooled to the grid.

    The mean is taken over **all** channels; a map whose size differs from the grid (a 256×256
    input gives 8×8 with a ResNet) is brought to ``grid_size`` by adaptive average pooling.
    3-D input ``(B, h, w)`` is taken as heatmaps already and only pooled.

    A map smaller than the grid is stretched to it (a 1×1 map gives a constant heatmap, whose
    top cells are the first ones in row-major order); :class:`~torchvision_mix.AttentiveCutMix`
    refuses such maps and its ``extractor_size`` gives the extractor a larger copy instead.

    Example:
        >>> heatmaps(torch.ones(2, 64, 8, 8), grid_size=7).shape
        torch.Size([2, 7, 7])
    """
    if not isinstance(features, Tensor) or features.ndim not in (3, 4):
        raise ValueError(
            f"features must be feature maps (B, C, h, w) or heatmaps (B, h, w), but got {_describe(features)}."
        )
    if not features.is_floating_point():
        features = features.float()
    heat = features.mean(dim=1) if features.ndim == 4 else features
    size = (grid_size, grid_size) if isinstance(grid_size, int) else (int(grid_size[0]), int(grid_size[1]))
    if tuple(heat.shape[1:]) != size:
        heat = nn.functional.adaptive_avg_pool2d(heat[:, None], size)[:, 0]
    return heat
