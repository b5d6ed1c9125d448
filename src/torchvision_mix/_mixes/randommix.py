"""RandomMix: one of several mixes per batch or per sample (the CutMix/MixUp switch of training recipes)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._base import BlendMix, MaskMix, _MixBase
from .._core._checks import _check_choice_probabilities, _check_p
from .._inputs import _main_batch

__all__ = ["RandomMix"]


class RandomMix(_MixBase):
    """Apply one of several mixes, chosen per batch or, with ``per_sample``, per sample.

    The recipe of DeiT, ConvNeXt and timm's training scripts, MixUp α=0.8 and CutMix α=1.0
    switched with probability 0.5 and label smoothing 0.1, is::

        RandomMix([CutMix(alpha=1.0), MixUp(alpha=0.8)], p=[0.5, 0.5], per_sample=True,
                  num_classes=1000, label_smoothing=0.1)

    With ``per_sample=True`` (timm's ``mode="elem"``) every sample gets its own choice and its
    own parameters (λ, box, ...), all vectorised: pasted and blended samples are applied in one
    step, with no Python loop over the batch; any batch size, odd ones and 1 included. Each
    sample's label is mixed by its partner's weight in it: the exact pasted fraction for a mask
    mix, the blend weight for MixUp (or the child's own ``label_rule``).

    The children are used for their mix parameters only (``alpha``, ``grid_size``, a feature
    extractor, ...); RandomMix owns everything else, so children need no ``num_classes``: their
    ``num_classes``, ``labels_getter``, ``p``, ``per_sample``, ``inplace``, ``label_smoothing``
    and ``generator`` are replaced by RandomMix's (it keeps copies of the children, with its own
    generator; changing a child afterwards does not reach the copies). Labels, smoothing (applied
    once), ``labels_getter``, types and structures are as in :class:`~torchvision_mix.CutMix`.
    Segmentation masks are accepted only when no child blends (a blend cannot mix class ids).

    Mapping from ``timm.data.Mixup`` (see the docs' MixUp page for the whole table):
    ``RandomMix([MixUp(alpha=mixup_alpha), CutMix(alpha=cutmix_alpha)],
    p=[1 - switch_prob, switch_prob], mix_p=prob, per_sample=(mode == "elem"),
    label_smoothing=label_smoothing, num_classes=num_classes)``.

    Args:
        transforms: the mixes to choose from: instances of this package's mixes, or of your own
            :class:`~torchvision_mix.MaskMix` and :class:`~torchvision_mix.BlendMix` subclasses.
        p: the probability of choosing each mix, one number >= 0 per mix (normalised when drawn;
            ``None``: equal). Like ``v2.RandomChoice``'s ``p``; the attribute reads back what was
            given and may be set between batches.
        mix_p: the probability of mixing at all (per batch, or per sample with ``per_sample``).
        num_classes: as in :class:`~torchvision_mix.CutMix`.
        labels_getter: as in :class:`~torchvision_mix.CutMix`.
        per_sample: choose the mix, and draw its parameters, per sample.
        inplace: write into the given tensors.
        label_smoothing: ε in [0, 1), applied once to the labels before mixing.
        generator: a CPU :class:`torch.Generator` for every draw (the choice and the children's).

    Example:
        >>> import torch
        >>> from torchvision_mix import CutMix, MixUp, RandomMix
        >>> mix = RandomMix([CutMix(alpha=1.0), MixUp(alpha=0.8)], p=[0.5, 0.5], per_sample=True,
        ...                 num_classes=10, label_smoothing=0.1, generator=torch.Generator().manual_seed(0))
        >>> images, labels = mix(torch.rand(7, 3, 32, 32), torch.randint(10, (7,)))
        >>> labels.shape, round(float(labels.sum()), 4)
        (torch.Size([7, 10]), 7.0)
    """

    def __init__(
        self,
        transforms: Sequence[MaskMix | BlendMix],
        *,
        p: Sequence[float] | None = None,
        mix_p: float = 1.0,
        num_classes: int | None = None,
        labels_getter: Any = "default",
        per_sample: bool = False,
        inplace: bool = False,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            labels_getter=labels_getter,
            p=mix_p,
            per_sample=per_sample,
            inplace=inplace,
            label_smoothing=label_smoothing,
            generator=generator,
        )
        if not isinstance(transforms, Sequence) or isinstance(transforms, (str, bytes)) or not transforms:
            raise ValueError(f"transforms must be a non-empty list of mixes, but got {transforms!r}.")
        for t in transforms:
            if not isinstance(t, (MaskMix, BlendMix)):
                raise TypeError(
                    "RandomMix chooses among mask mixes and blends (CutMix, MixUp, ... or a MaskMix or BlendMix "
                    f"subclass), but got a {type(t).__module__}.{type(t).__name__}."
                )
        self.transforms = nn.ModuleList(self._adopt(t) for t in transforms)
        self.p = [1.0] * len(transforms) if p is None else p

    def _adopt(self, child: _MixBase) -> _MixBase:
        """A copy of ``child`` that draws from this mix's generator, in this mix's mode, always."""
        mine = copy.copy(child)
        mine.generator = self.generator
        mine.per_sample = self.per_sample
        mine.inplace = False
        mine.p = 1.0
        mine._adopted = True  # its repr shows only its own mix parameters
        return mine

    @property  # type: ignore[override]
    def p(self) -> list[float]:
        """The probability of choosing each mix, as given (they are normalised when drawn).

        May be set between batches, like ``v2.RandomChoice``'s; checked on every assignment.
        """
        return list(self._choice_p)

    @p.setter  # type: ignore[override]
    def p(self, value: Sequence[float]) -> None:
        self._choice_p = _check_choice_probabilities(value, len(self.transforms))

    @property
    def mix_p(self) -> float:
        """The probability of mixing at all (per batch, or per sample with ``per_sample``)."""
        return self._p

    @mix_p.setter
    def mix_p(self, value: float) -> None:
        self._p = _check_p(value)

    @property
    def blends(self) -> bool:
        """Whether any child blends (then segmentation masks are refused, on the first batch)."""
        return any(child.blends for child in self._children())

    def extra_repr(self) -> str:
        return (
            f"p={self._choice_p}, mix_p={self._p}, per_sample={self.per_sample}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing}, inplace={self.inplace}"
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for child in self._children():  # the children share this mix's generator again
            child.generator = self.generator

    def _children(self) -> list[_MixBase]:
        return list(self.transforms)  # type: ignore[arg-type]

    def get_side_inputs(self, inputs: Any) -> dict[str, Any]:
        side: dict[str, Any] = {}
        for child in self._children():
            side.update(child.get_side_inputs(inputs))
        return side

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        for child in self._children():
            child.check_batch(batch, **side_inputs)

    def make_params(
        self, flat_inputs: list[Any], *, applied: Tensor | bool | None = None, **side_inputs: Any
    ) -> dict[str, Any]:
        children = self._children()
        if applied is None:
            applied = self._draw_apply(_main_batch(flat_inputs).shape[0])
        if applied is False:
            return children[0].make_params(flat_inputs, applied=False, **side_inputs)
        if not isinstance(applied, Tensor):
            k = int(self._draw_choice(1)[0])
            return children[k].make_params(flat_inputs, applied=True, **side_inputs)
        choice = self._draw_choice(applied.shape[0])
        # Every child builds its part, with the samples it was chosen for (possibly none): no
        # branch on the draws, so that torch.compile does not break its graph here. A child's
        # lam and label weights are 0 on the samples of the others.
        parts = [
            child.make_params(flat_inputs, applied=applied & (choice == k), **side_inputs)
            for k, child in enumerate(children)
        ]
        masks = [part["masks"] for part in parts if part["masks"] is not None]
        blends = [part["blend"] for part in parts if part["blend"] is not None]
        return {
            "masks": _union(masks),
            "box": None,
            "blend": _sum(blends) if blends else None,
            "lam": _sum([part["lam"] for part in parts]),
            "label_weights": _sum([part["label_weights"] for part in parts]),
            "applied": applied.to(parts[0]["lam"].device, non_blocking=True),
        }

    @torch.compiler.disable  # drawn in eager mode from the CPU generator, compiled or not
    def _draw_choice(self, size: int) -> Tensor:
        """The chosen child of each of ``size`` samples (a CPU int64 tensor)."""
        if size == 0:
            return torch.zeros(0, dtype=torch.int64)  # multinomial refuses to draw nothing
        total = sum(self._choice_p)
        probabilities = torch.tensor([v / total for v in self._choice_p], dtype=torch.float64)
        return torch.multinomial(probabilities, size, replacement=True, generator=self.generator)


def _union(masks: list[Tensor]) -> Tensor | None:
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def _sum(values: list[Tensor]) -> Tensor:
    return sum(values[1:], values[0])
