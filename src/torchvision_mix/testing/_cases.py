"""One drawn input for a mixing transform: the call's arguments and what they hold."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["MixInputs"]


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"{type(x).__name__}({str(x.dtype).removeprefix('torch.')}, {tuple(x.shape)})"
    return repr(x)


@dataclass(frozen=True, eq=False, repr=False)
class MixInputs:
    """The input of one call of a mixing transform, as :func:`~torchvision_mix.testing.strategies.mix_inputs` draws it.

    Call the transform as ``transform(*inputs.args)``, or give the whole object to
    :func:`~torchvision_mix.testing.check_mix_transform`, which also takes ``num_classes`` from it.

    Attributes:
        args: the positional arguments of the call (one structure, or ``(images, labels)``).
        images: the image or video batch inside ``args``.
        labels: the labels inside ``args`` (``None`` for the ``"segmentation"`` structure).
        num_classes: ``K``, needed by the transform for class-index labels.
        structure: the name of the structure (one of
            :data:`~torchvision_mix.testing.strategies.STRUCTURES`).
        masks: the segmentation :class:`~torchvision.tv_tensors.Mask` inside ``args``, if any.
        extras: the pass-through entries inside ``args`` (key → value), if any.
    """

    args: tuple[Any, ...]
    images: Tensor
    labels: Tensor | None
    num_classes: int
    structure: str
    masks: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def clone(self) -> MixInputs:
        """A deep copy: the same structure and values in new tensors (to call a transform twice)."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        parts = [
            f"structure={self.structure!r}",
            f"images={_describe(self.images)}",
            f"labels={_describe(self.labels)}",
            f"num_classes={self.num_classes}",
        ]
        if self.masks is not None:
            parts.append(f"masks={_describe(self.masks)}")
        if self.extras:
            parts.append("extras={" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in self.extras.items()) + "}")
        return f"MixInputs({', '.join(parts)})"
