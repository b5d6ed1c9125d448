"""The methods compared: one registry, name → (title, builder).

A builder makes the transform from a :class:`MixContext` (one context per method and seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import AttentiveCutMix, CutMix, FMix, GridMix, MixUp, RandomMix, SaliencyMix
from .data import CommandError


@dataclass(frozen=True)
class MixContext:
    """What a builder may use to make its transform (one context per method and seed)."""

    num_classes: int
    generator: torch.Generator
    extractor: Callable[[Tensor], Any] | None = None
    alpha: float = 1.0
    grid_size: int = 7
    top_k: int = 6
    image_size: int = 28
    extractor_stride: int = 4  # input pixels per feature-map cell: 4 for SmallCNN, 8 for the ResNet-18


def common(ctx: MixContext) -> dict[str, Any]:
    return {"num_classes": ctx.num_classes, "generator": ctx.generator}


class LinearSchedule:
    """Scheduled CutMix: before each epoch the training loop calls ``set_epoch``, which sets the
    wrapped transform's ``p`` to ``epoch / epochs`` (0 at the start, rising linearly towards 1)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.transform.p = epoch / epochs

    def __call__(self, *inputs: Any) -> Any:
        return self.transform(*inputs)


def _none(ctx: MixContext) -> None:
    return None


def _mixup(ctx: MixContext) -> Any:
    return MixUp(alpha=ctx.alpha, **common(ctx))


def _cutmix(ctx: MixContext) -> Any:
    return CutMix(alpha=ctx.alpha, **common(ctx))


def _attentive_options(ctx: MixContext) -> dict[str, Any]:
    return {
        "feature_extractor": ctx.extractor,
        # The attention is computed on a copy resized so that the extractor's map is at least the grid.
        "extractor_size": max(ctx.image_size, ctx.extractor_stride * ctx.grid_size),
        "grid_size": ctx.grid_size,
        "top_k": ctx.top_k,
        **common(ctx),
    }


def _attentive(ctx: MixContext) -> Any:
    return AttentiveCutMix(**_attentive_options(ctx))


def _attentive_attention(ctx: MixContext) -> Any:
    # The label weight is the share of the donor's attention mass that was pasted, not the area.
    return AttentiveCutMix(**_attentive_options(ctx), label_rule="attention")


def _recipe(ctx: MixContext) -> Any:
    children = [CutMix(alpha=1.0), MixUp(alpha=0.8)]
    return RandomMix(children, p=[0.5, 0.5], per_sample=True, **common(ctx))


def _saliencymix(ctx: MixContext) -> Any:
    return SaliencyMix(alpha=ctx.alpha, **common(ctx))


def _fmix(ctx: MixContext) -> Any:
    return FMix(alpha=ctx.alpha, decay_power=3.0, **common(ctx))


def _gridmix(ctx: MixContext) -> Any:
    return GridMix(**common(ctx))


def _cutmix_gaussian(ctx: MixContext) -> Any:
    return CutMix(alpha=ctx.alpha, center="gaussian", **common(ctx))


def _cutmix_fixed(ctx: MixContext) -> Any:
    # The paper's fixed 16 x 16 box on 32 x 32 CIFAR images: half the side, scaled to these images.
    side = max(1, round(ctx.image_size * 16 / 32))
    return CutMix(box_size=side, **common(ctx))


def _cutmix_scheduled(ctx: MixContext) -> Any:
    return LinearSchedule(CutMix(alpha=ctx.alpha, p=0.0, **common(ctx)))


def _cutmix_onehot(ctx: MixContext) -> Any:
    return CutMix(alpha=ctx.alpha, label_rule="one_hot", **common(ctx))


def _cutmix_complete(ctx: MixContext) -> Any:
    return CutMix(alpha=ctx.alpha, label_rule="complete", **common(ctx))


Builder = Callable[[MixContext], Any]

METHODS: dict[str, tuple[str, Builder]] = {
    "none": ("no mixing", _none),
    "mixup": ("MixUp", _mixup),
    "cutmix": ("CutMix", _cutmix),
    "attentive": ("Attentive CutMix", _attentive),
    "attentive-attention": ("Attentive CutMix, attention label", _attentive_attention),
    "recipe": ("CutMix/MixUp recipe", _recipe),
    "saliencymix": ("SaliencyMix", _saliencymix),
    "fmix": ("FMix", _fmix),
    "gridmix": ("GridMix", _gridmix),
    "cutmix-gaussian": ("CutMix, Gaussian centre", _cutmix_gaussian),
    "cutmix-fixed": ("CutMix, fixed-size box", _cutmix_fixed),
    "cutmix-scheduled": ("CutMix, scheduled", _cutmix_scheduled),
    "cutmix-onehot": ("CutMix, one-hot label", _cutmix_onehot),
    "cutmix-complete": ("CutMix, complete label", _cutmix_complete),
}

# The methods that paste by attention: they need the extractor and are swept over --top-k.
ATTENTIVE = ("attentive", "attentive-attention")

DEFAULT_METHODS = ("none", "mixup", "cutmix", "attentive", "attentive-attention", "recipe")
PRESETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_METHODS,
    "cutmix-variants": (
        "none",
        "cutmix",
        "cutmix-gaussian",
        "cutmix-fixed",
        "cutmix-scheduled",
        "cutmix-onehot",
        "cutmix-complete",
    ),
    "all": tuple(METHODS),
}
SWEEP_METHODS = ("none", "attentive", "attentive-attention")  # the default of a --top-k sweep

# The seed papers' CIFAR-10 ResNet-18 row (Walawalkar et al., 2020; Attentive CutMix with N = 6 cells).
PAPER_CIFAR10_RESNET18 = {"none": 84.67, "mixup": 88.52, "cutmix": 87.92, "attentive": 88.94}
PAPER_TOP_K = 6


def build_mix(method: str, ctx: MixContext) -> Any:
    """The transform of ``method`` (``None`` for no mixing)."""
    return METHODS[method][1](ctx)


def parse_methods(text: str | None, sweep: bool) -> tuple[str, ...]:
    """The methods to run: a comma-separated list of names and presets (``None``: the default)."""
    if text is None:
        return SWEEP_METHODS if sweep else DEFAULT_METHODS
    methods: list[str] = []
    for item in (m.strip() for m in text.split(",")):
        if not item:
            continue
        for method in PRESETS.get(item, (item,)):
            if method not in METHODS:
                raise CommandError(
                    f"unknown method {method!r}: choose from {', '.join(METHODS)} (or {', '.join(PRESETS)})"
                )
            if method not in methods:
                methods.append(method)
    if not methods:
        raise CommandError(f"--methods {text!r} names no method: choose from {', '.join(METHODS)}")
    return tuple(methods)
