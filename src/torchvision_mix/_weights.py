"""Pretrained torchvision classifiers: resolve their weights, load them (offline too), cut them to features.

Used by :func:`torchvision_mix.attention.feature_extractor` and by AttentiveCutMix's default
extractor; each caller words the fix of a failed download for its own arguments
(:meth:`WeightsUnavailable.reworded`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torchvision
from torch import nn


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be downloaded (offline); the message says what to do instead."""

    def __init__(self, model: str, weights: Any, reason: object, fix: str | None = None) -> None:
        self.model, self.weights, self.reason = model, weights, reason
        self.url = getattr(weights, "url", "the weights file")
        self.offline_copy = os.path.join(torch.hub.get_dir(), "checkpoints")
        default_fix = (
            "pass weights_path='file.pth' (a state dict of the model) or weights=None for an untrained network"
        )
        super().__init__(self.reworded(f"the pretrained weights of {model} ({weights})", fix or default_fix))

    def reworded(self, what: str, fix: str) -> str:
        """The message for a caller: what could not be loaded, and its own arguments as the fix."""
        return (
            f"Could not load {what}. On a machine without internet, either copy {self.url} into "
            f"{self.offline_copy} (torchvision then loads it from there), or {fix}. ({self.reason})"
        )


def resolve_weights(model: str, weights: Any) -> Any:
    """The weights enum member for ``weights`` (``"DEFAULT"``, a member's name or a member); nothing is loaded."""
    enum = torchvision.models.get_model_weights(model)
    if weights == "DEFAULT":
        return enum.DEFAULT
    if isinstance(weights, str):
        try:
            return enum[weights]
        except KeyError:
            raise ValueError(f"Unknown weights {weights!r} for {model}; known: {[w.name for w in enum]}.") from None
    return weights


def load_model(model: str | nn.Module, *, weights: Any, weights_path: str | os.PathLike[str] | None) -> nn.Module:
    """A torchvision classifier by name (from ``weights_path``, ``weights`` or untrained), or ``model`` itself."""
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a model name or an nn.Module, but got {type(model).__name__}.")
    try:
        builder = torchvision.models.get_model_builder(model)
    except ValueError:
        raise ValueError(f"Unknown torchvision model {model!r}.") from None
    if weights_path is not None:
        net = builder(weights=None)
        net.load_state_dict(torch.load(os.fspath(weights_path), map_location="cpu", weights_only=True))
        return net
    if weights is None:
        return builder(weights=None)
    chosen = resolve_weights(model, weights)
    try:
        return builder(weights=chosen)
    except OSError as error:
        raise WeightsUnavailable(model, chosen, error) from None


def truncate(model: nn.Module, layer: str | None) -> nn.Module:
    """The part of a torchvision classifier up to its last convolutional stage (or ``layer``)."""
    if layer is not None:
        from torchvision.models.feature_extraction import create_feature_extractor

        try:
            return create_feature_extractor(model, return_nodes={layer: "features"})
        except ValueError as error:
            raise ValueError(f"layer {layer!r} is not a node of {type(model).__name__}: {error}") from None
    if all(hasattr(model, name) for name in ("conv1", "layer4", "avgpool", "fc")):  # ResNet, ResNeXt, Wide ResNet
        return nn.Sequential(*list(model.children())[:-2])
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):  # VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt, ...
        return features
    raise ValueError(
        f"Cannot tell where the last convolutional stage of {type(model).__name__} ends: "
        "pass layer='name' (a node name from torchvision.models.feature_extraction.get_graph_node_names)."
    )
