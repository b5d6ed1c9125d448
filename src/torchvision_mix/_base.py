"""The bases every mix is built on: find the inputs, validate, build the weight, apply, mix the labels.

:class:`MaskMix` is the public base of the mask family: a subclass implements one method,
:meth:`MaskMix.make_masks`. :class:`_MixBase` holds what blends (MixUp) and switches (RandomMix)
share with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from ._core import _checks
from ._core.apply import _paste_box, apply, blend_dtype, mask_fractions
from ._core.labels import _check_labels, _mix_labels
from ._inputs import _check_probability, _default_labels_getter, _is_pure_tensor, _main_batch, _parse_labels_getter

__all__ = ["MaskMix", "UnsupportedInputError"]


class UnsupportedInputError(TypeError, ValueError):
    """An input a mix cannot take (a PIL image, boxes, keypoints, a mask to blend).

    Both a :class:`TypeError` and a :class:`ValueError`: torchvision's ``v2.CutMix`` raises
    ``ValueError`` for these, so code written against it catches ours too.
    """


class _GeneratorState:
    """A CPU generator's state as plain bytes.

    Pickling a :class:`torch.Generator` directly carries its state as a tensor, which torch's
    multiprocessing pickler moves through shared memory and fails to rebuild in ``spawn``
    workers; bytes travel everywhere.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.state = bytes(generator.get_state().tolist())

    def restore(self) -> torch.Generator:
        generator = torch.Generator()
        generator.set_state(torch.tensor(list(self.state), dtype=torch.uint8))
        return generator


@dataclass
class _Weights:
    """The partner's per-pixel weight that a mix built for one batch (on the batch's device).

    ``masks``: boolean ``(B, H, W)``, pasted pixels; ``blend``: ``(B,)`` blend weights of the
    partner (in the dtype the blend is computed in); ``box``: when set, ``masks`` is this one box
    for every sample, which allows a region-only paste; ``applied``: ``(B,)`` bool, the samples
    that were mixed; ``lam``: ``(B,)`` the mean weight of the partner in each sample; ``label``:
    the partner's weight in the labels when already decided (a switch between mixes asks each).
    """

    lam: Tensor
    applied: Tensor
    masks: Tensor | None = None
    blend: Tensor | None = None
    box: tuple[int, int, int, int] | None = None
    label: Tensor | None = None


def _plain(x: Tensor) -> Tensor:
    """``x`` as a plain tensor (torch.compile cannot trace ``as_subclass`` on a plain tensor)."""
    return x if type(x) is Tensor else x.as_subclass(Tensor)


def _lam_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class _MixBase(Transform):
    """What every mix of this package shares: inputs, validation, ``p``, labels, pickling."""

    _unsupported = (PIL.Image.Image, tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)
    #: Whether segmentation ``Mask`` leaves can be mixed (a blend cannot mix class ids).
    _mixes_segmentation = True

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        labels_getter: Any = "default",
        p: float = 1.0,
        per_sample: bool = False,
        inplace: bool = False,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _checks._check_num_classes(num_classes)
        label_smoothing = _checks._check_label_smoothing(label_smoothing)
        _checks._check_generator(generator)
        self.num_classes = num_classes
        self._p = _check_probability(p)
        self.per_sample = _checks._check_bool("per_sample", per_sample)
        self.inplace = _checks._check_bool("inplace", inplace)
        self.label_smoothing = label_smoothing
        self.generator = generator
        self._labels_getter = _parse_labels_getter(labels_getter)

    @property
    def p(self) -> float:
        """Probability of mixing a batch (of mixing each sample with ``per_sample``).

        May be set between batches, e.g. raised linearly over training (the CutMix paper's
        "scheduled CutMix"); the value is checked on every assignment.
        """
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = _check_probability(value)

    #: Options a switch (:class:`~torchvision_mix.RandomMix`) sets for the children it adopts.
    _switch_options = frozenset({"num_classes", "per_sample", "inplace", "label_smoothing"})

    def extra_repr(self) -> str:
        if getattr(self, "_adopted", False):  # a RandomMix child: show only what is in force
            options = super().extra_repr().split(", ")
            return ", ".join(o for o in options if o.split("=", 1)[0] not in self._switch_options)
        return ", ".join(filter(None, [f"p={self._p}", super().extra_repr()]))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if isinstance(state.get("generator"), torch.Generator):
            state["generator"] = _GeneratorState(state["generator"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("generator"), _GeneratorState):
            state = {**state, "generator": state["generator"].restore()}
        super().__setstate__(state)

    # ---------------------------------------------------------------------------------------
    # Hooks for subclasses
    # ---------------------------------------------------------------------------------------

    def get_side_inputs(self, inputs: Any) -> dict[str, Any]:
        """Side inputs the mix reads from the transform's input, passed to :meth:`check_batch` and the builder.

        Called once per call with the whole input (e.g. ``(images, {"labels": ..., "attention": ...})``)
        before anything is changed. The values found are never mixed nor taken for the image batch;
        they come back unchanged. Default: none.
        """
        return {}

    def check_batch(self, batch: Tensor, **side_inputs: Any) -> None:
        """Raise ``ValueError``/``TypeError`` if the mix cannot take this batch; runs before any change.

        ``batch`` is the leaf that drives the mix (the first image or video, else the first mask),
        ``side_inputs`` what :meth:`get_side_inputs` found. Default: accept.
        """

    def _make_weights(self, batch: Tensor, applied: Tensor | bool, side_inputs: dict[str, Any]) -> _Weights:
        """The weight of the partner for this batch; ``applied`` is ``True`` or a ``(B,)`` bool tensor."""
        raise NotImplementedError

    def _label_weights(self, weights: _Weights) -> Tensor:
        """The partner's weight in each label row: ``lam`` (the pixel fraction) unless a rule says otherwise."""
        return weights.lam

    # ---------------------------------------------------------------------------------------
    # Input discovery and validation: everything is checked before anything is changed.
    # ---------------------------------------------------------------------------------------

    def _find_batch_leaves(self, flat_inputs: list[Any], exclude: list[Any]) -> list[int]:
        """Indices of the leaves to mix: Images, Videos and Masks; else the first plain tensor."""
        explicit = [
            i for i, x in enumerate(flat_inputs) if isinstance(x, (tv_tensors.Image, tv_tensors.Video, tv_tensors.Mask))
        ]
        if any(not isinstance(flat_inputs[i], tv_tensors.Mask) for i in explicit):
            return explicit
        plain = [i for i, x in enumerate(flat_inputs) if _is_pure_tensor(x) and all(x is not e for e in exclude)]
        return explicit + plain[:1]

    def _check_leaf(self, leaf: Tensor, reference: tuple[int, int, int] | None) -> tuple[int, int, int]:
        name = type(leaf).__name__
        me = type(self).__name__
        expected: tuple[int, ...]
        if isinstance(leaf, tv_tensors.Video):
            expected, layout = (5,), "(B, T, C, H, W)"
        elif isinstance(leaf, tv_tensors.Mask):
            if not self._mixes_segmentation:
                raise UnsupportedInputError(
                    f"{me}() can blend pixels, but a segmentation Mask holds class ids, which cannot be blended: "
                    "mix masks with mask mixes only (CutMix, FMix, ...). A v2.RandomChoice([CutMix(...), "
                    "MixUp(...)]) fails so only on the batches where MixUp is drawn; RandomMix([...]) refuses a "
                    "blending mix for masks on its first batch."
                )
            expected, layout = (3, 4), "(B, H, W) or (B, 1, H, W)"
        else:
            expected, layout = (4,), "(B, C, H, W)"
        if leaf.ndim not in expected:
            raise ValueError(
                f"{me}() expected a batched {name} of shape {layout}, "
                f"but got {leaf.ndim} dimensions (shape {tuple(leaf.shape)}) instead."
            )
        if isinstance(leaf, tv_tensors.Mask) and leaf.ndim == 4 and leaf.shape[1] != 1:
            raise ValueError(
                f"{me}() expected a segmentation Mask of shape (B, H, W) or (B, 1, H, W), "
                f"but got {leaf.shape[1]} channels (shape {tuple(leaf.shape)})."
            )
        if leaf.is_complex():
            raise TypeError(f"{me}() does not mix complex tensors, but got dtype {leaf.dtype}.")
        if leaf.dtype == torch.bool and not self._mixes_segmentation:
            raise TypeError(f"{me}() blends pixels and cannot blend a bool tensor; convert it to a number dtype.")
        size = (leaf.shape[0], leaf.shape[-2], leaf.shape[-1])
        if reference is not None and size != reference:
            raise ValueError(
                f"All batches given to {me}() must share batch size, height and width "
                f"(B, H, W): {reference} != {size} ({name} of shape {tuple(leaf.shape)})."
            )
        if size[1] * size[2] == 0:
            raise ValueError(f"{me}() needs images with at least one pixel, but got shape {tuple(leaf.shape)}.")
        return size

    def _validate(self, inputs: Any, flat_inputs: list[Any]) -> tuple[list[int], Tensor | None, dict[str, Any]]:
        for x in flat_inputs:
            if isinstance(x, self._unsupported):
                raise UnsupportedInputError(
                    f"{type(self).__name__}() mixes batched tensors (tv_tensors.Image, Video, Mask or plain tensors), "
                    f"but got a {type(x).__module__}.{type(x).__name__}: PIL images are single images (convert and "
                    "batch them first), and bounding boxes and keypoints cannot be mixed by a pixel mask."
                )
        labels = self._get_labels(inputs, flat_inputs)
        side_inputs = self.get_side_inputs(inputs)
        if not isinstance(side_inputs, dict):
            raise TypeError(
                f"{type(self).__name__}.get_side_inputs() must return a dict, "
                f"but returned {type(side_inputs).__name__}."
            )
        leaves = self._find_batch_leaves(flat_inputs, [labels, *side_inputs.values()])
        if not leaves:
            raise TypeError(
                f"{type(self).__name__}() found no batch to mix: expected a tv_tensors.Image, Video, Mask or a plain "
                f"tensor of shape (B, C, H, W), but got {[type(x).__name__ for x in flat_inputs]}."
            )
        reference = None
        device = flat_inputs[leaves[0]].device
        for i in leaves:
            reference = self._check_leaf(flat_inputs[i], reference)
            if flat_inputs[i].device != device:
                raise ValueError(f"All batches must be on one device, but got {device} and {flat_inputs[i].device}.")
        if labels is not None:
            assert reference is not None
            _check_labels(labels, num_classes=self.num_classes, batch_size=reference[0])
        self.check_batch(_main_batch([flat_inputs[i] for i in leaves]), **side_inputs)
        return leaves, labels, side_inputs

    def _get_labels(self, inputs: Any, flat_inputs: list[Any]) -> Tensor | None:
        if self._labels_getter is None:
            return None
        try:
            labels = self._labels_getter(inputs)
        except ValueError:
            # Segmentation: masks without class labels need none, when the default getter finds none.
            if self._labels_getter is _default_labels_getter and any(
                isinstance(x, tv_tensors.Mask) for x in flat_inputs
            ):
                return None
            raise
        if not isinstance(labels, Tensor):
            raise TypeError(f"The labels must be a tensor, but got {type(labels).__name__} instead.")
        return labels

    # ---------------------------------------------------------------------------------------
    # The mix
    # ---------------------------------------------------------------------------------------

    def forward(self, *inputs: Any) -> Any:
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        leaves, labels, side_inputs = self._validate(inputs, flat_inputs)
        params = self.make_params([flat_inputs[i] for i in leaves], **side_inputs)
        params["labels"] = labels
        flat_outputs = list(flat_inputs)
        for i in leaves:
            flat_outputs[i] = self.transform(flat_inputs[i], params)
        if labels is not None:
            for i, x in enumerate(flat_inputs):
                if x is labels:
                    flat_outputs[i] = self.transform(x, params)
        return tree_unflatten(flat_outputs, spec)

    def make_params(self, flat_inputs: list[Any], **side_inputs: Any) -> dict[str, Any]:
        batch = _plain(_main_batch(flat_inputs))
        applied = self._draw_apply(batch.shape[0])
        weights = None if applied is False else self._make_weights(batch, applied, side_inputs)
        if weights is None:
            lam = torch.zeros(batch.shape[0], dtype=_lam_dtype(batch.device), device=batch.device)
        else:
            lam = self._label_weights(weights) if weights.label is None else weights.label
        return {"weights": weights, "lam": lam}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt is params["labels"]:
            # Checked in forward() before anything was changed.
            return _mix_labels(
                inpt, params["lam"], num_classes=self.num_classes, partner=None, label_smoothing=self.label_smoothing
            )
        weights: _Weights | None = params["weights"]
        if not isinstance(inpt, Tensor) or weights is None:
            return inpt
        plain = _plain(inpt)
        if weights.box is not None and not (plain.requires_grad and torch.is_grad_enabled()):
            out = _paste_box(plain, weights.box, inplace=self.inplace)
        else:
            squeeze = isinstance(inpt, tv_tensors.Mask) and plain.ndim == 4
            target = plain[:, 0] if squeeze else plain
            out = apply(target, masks=weights.masks, weights=weights.blend, inplace=self.inplace)
            if squeeze:
                out = out[:, None]
        if self.inplace:
            return inpt
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def _draw_apply(self, size: int) -> Tensor | bool:
        """Whether to mix: one bool for the batch, or a (B,) bool tensor with ``per_sample``."""
        p = self._p
        if p == 1.0:
            return torch.ones(size, dtype=torch.bool) if self.per_sample else True
        return self._draw_p(size, p)

    @torch.compiler.disable  # drawn in eager mode from the CPU generator, compiled or not
    def _draw_p(self, size: int, p: float) -> Tensor | bool:
        if self.per_sample:
            return torch.rand(size, generator=self.generator) < p
        return bool(torch.rand(1, generator=self.generator) < p)


def _applied_on(applied: Tensor | bool, size: int, device: torch.device) -> Tensor:
    if isinstance(applied, Tensor):
        return applied.to(device, non_blocking=True)
    return torch.ones(size, dtype=torch.bool, device=device)


class MaskMix(_MixBase):
    """The public base of the mask family: subclass it and implement :meth:`make_masks`.

    A mask mix pastes, for every output sample ``i``, the pixels of its partner ``i - 1`` where a
    boolean mask is ``True``, and mixes the labels by the exact fraction of pasted pixels. The
    subclass only builds the mask; everything else comes from here, as in
    :class:`~torchvision_mix.CutMix`: every input structure torchvision's ``v2.CutMix`` takes
    (``(images, labels)``, the ``[images, labels]`` list a DataLoader yields, dicts with
    pass-through keys), ``tv_tensors.Image``/``Video``/``Mask`` and plain tensors (types kept),
    validation before anything changes, ``num_classes``, ``labels_getter``, ``p``, ``per_sample``
    (``p`` drawn per sample), ``inplace``, ``label_smoothing``, ``generator``, pickling (so
    :class:`~torchvision_mix.MixCollate` with ``spawn`` workers), no host synchronisation.

    Side inputs (as :class:`~torchvision_mix.AttentiveCutMix` reads precomputed attention): override
    :meth:`get_side_inputs` to return ``{"name": value}`` found in the input; they reach
    :meth:`check_batch` and :meth:`make_masks` as keyword arguments and pass through unchanged.

    Args:
        num_classes: number of classes; needed for class-index labels ``(B,)``, optional for soft
            labels ``(B, K)`` (then it must equal ``K``).
        labels_getter: ``"default"`` (item 1 of a tuple/list, or the ``labels``/``*label*`` key of
            a dict), a callable returning the labels from the input, or ``None`` (no labels).
        p: probability of mixing the batch (with ``per_sample``, each sample).
        per_sample: draw ``p`` per sample; :meth:`make_masks` should then draw its own random
            parameters per sample too (read ``self.per_sample``).
        inplace: write into the given tensors. Default ``False``: inputs are never modified.
        label_smoothing: ε in [0, 1), applied to the labels before mixing.
        generator: a CPU :class:`torch.Generator`; draw every random number from
            ``self.generator``.

    Example:
        >>> import torch
        >>> from torchvision_mix import MaskMix
        >>> class LeftHalf(MaskMix):
        ...     def make_masks(self, batch):
        ...         b, h, w = batch.shape[0], batch.shape[-2], batch.shape[-1]
        ...         masks = torch.zeros(b, h, w, dtype=torch.bool, device=batch.device)
        ...         masks[..., : w // 2] = True
        ...         return masks
        >>> images, labels = LeftHalf(num_classes=3)(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
        >>> labels.tolist()
        [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    """

    def make_masks(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        """Build the masks: boolean ``(B, H, W)`` on ``batch.device``, ``True`` where ``i`` takes its partner's pixel.

        Args:
            batch: the batch as a plain tensor ``(B, ..., H, W)`` (the first image or video leaf,
                else the segmentation mask), on its device. Read its shape, device and, if the
                mix needs them, its pixels; never modify it.
            side_inputs: what :meth:`get_side_inputs` found.

        Sample ``i``'s partner is sample ``i - 1`` (sample ``0``'s is ``B - 1``). Draw random
        numbers from ``self.generator`` on the CPU, and per sample when ``self.per_sample``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement make_masks(self, batch).")

    def _checked_masks(self, masks: Any, batch: Tensor) -> Tensor:
        name = type(self).__name__
        size = (batch.shape[0], batch.shape[-2], batch.shape[-1])
        if not isinstance(masks, Tensor):
            raise TypeError(
                f"{name}.make_masks() must return a boolean tensor of shape {size}, "
                f"but returned a {type(masks).__name__}."
            )
        if masks.dtype != torch.bool:
            raise TypeError(f"{name}.make_masks() must return a boolean tensor, but returned dtype {masks.dtype}.")
        if tuple(masks.shape) != size:
            raise ValueError(
                f"{name}.make_masks() must return masks of shape (B, H, W) = {size}, "
                f"but returned shape {tuple(masks.shape)}."
            )
        if masks.device != batch.device:
            raise ValueError(
                f"{name}.make_masks() must return masks on the batch's device {batch.device}, "
                f"but returned them on {masks.device}."
            )
        return masks

    def _make_weights(self, batch: Tensor, applied: Tensor | bool, side_inputs: dict[str, Any]) -> _Weights:
        masks = self._checked_masks(self.make_masks(batch, **side_inputs), batch)
        if isinstance(applied, Tensor):
            applied = applied.to(batch.device, non_blocking=True)
            masks = masks & applied[:, None, None]
        lam = mask_fractions(masks, dtype=_lam_dtype(batch.device))
        return _Weights(lam=lam, applied=_applied_on(applied, batch.shape[0], batch.device), masks=masks)


def _blend_weights(weights: Tensor, applied: Tensor | bool, batch: Tensor) -> _Weights:
    """A blend's record: the partner's weight ``(B,)`` (drawn on the CPU) moved to the batch, in its blend dtype."""
    if isinstance(applied, Tensor):
        weights = weights * applied
    w = weights.to(device=batch.device, dtype=blend_dtype(batch.dtype), non_blocking=True)
    return _Weights(
        lam=w.to(_lam_dtype(batch.device)),
        applied=_applied_on(applied, batch.shape[0], batch.device),
        blend=w,
    )
