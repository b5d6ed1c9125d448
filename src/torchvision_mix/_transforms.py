"""Batch-mixing transforms for ``torchvision.transforms.v2``."""

from __future__ import annotations

import collections.abc
import math
from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from . import masks as _masks

__all__ = ["CutMix"]

_LabelsGetter = Callable[[Any], Any]


def _is_pure_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and not isinstance(x, tv_tensors.TVTensor)


def _default_labels_getter(inputs: Any) -> Any:
    """Find the labels as torchvision's ``v2.CutMix`` does.

    ``(images, labels)`` → ``labels``; ``(images, {"labels": ...})`` or ``{"labels": ...}`` →
    the value of the key equal to ``labels`` (case-insensitive), else of the first key
    containing ``label``.
    """
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            raise ValueError(
                "With the default labels_getter the input must be (images, labels), [images, labels] or a dict "
                f"holding a 'labels' key, but got a {type(inputs).__name__} of length {len(inputs)}."
            )
        inputs = inputs[1]
    if isinstance(inputs, Tensor) and not isinstance(inputs, tv_tensors.TVTensor):
        return inputs
    if isinstance(inputs, collections.abc.Mapping):
        keys = [k for k in inputs if isinstance(k, str)]
        for candidates in ([k for k in keys if k.lower() == "labels"], [k for k in keys if "label" in k.lower()]):
            if candidates:
                return inputs[candidates[0]]
        raise ValueError(
            f"Could not find the labels among the keys {list(inputs)}: expected a key containing 'label'. "
            "Pass labels_getter=callable to say where they are, or labels_getter=None if there are none."
        )
    raise ValueError(
        "With the default labels_getter the input must be (images, labels) or a dict holding a 'labels' key, "
        f"but the second item is a {type(inputs).__name__}. Pass labels_getter=callable to say where the labels are."
    )


def _parse_labels_getter(labels_getter: Any) -> _LabelsGetter | None:
    if isinstance(labels_getter, str) and labels_getter == "default":
        return _default_labels_getter
    if labels_getter is None or callable(labels_getter):
        return labels_getter
    raise ValueError(f"labels_getter must be 'default', a callable or None, but got {labels_getter!r}.")


def _check_probability(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], but got {p!r}.")
    return float(p)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 or math.isinf(alpha):
        raise ValueError(f"alpha must be a finite number > 0, but got {alpha!r}.")
    return float(alpha)


def _lam_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class _MixTransform(Transform):
    """Shared machinery: find the batch and the labels, validate, build a mask, paste, mix labels.

    Subclasses implement :meth:`_build_masks`, returning a boolean mask ``(B, H, W)`` on the
    batch's device (``None`` to leave the batch unchanged) and, optionally, a box shared by the
    whole batch that allows a region-only in-place paste.
    """

    _unsupported = (PIL.Image.Image, tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)

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
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be an int >= 1 or None, but got {num_classes!r}.")
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0.0 <= label_smoothing < 1.0
        ):
            raise ValueError(f"label_smoothing must be in [0, 1), but got {label_smoothing!r}.")
        _masks._check_generator(generator)
        self.num_classes = num_classes
        self.p = _check_probability(p)
        self.per_sample = bool(per_sample)
        self.inplace = bool(inplace)
        self.label_smoothing = float(label_smoothing)
        self.generator = generator
        self._labels_getter = _parse_labels_getter(labels_getter)

    # ---------------------------------------------------------------------------------------
    # Input discovery and validation: everything is checked before anything is changed.
    # ---------------------------------------------------------------------------------------

    def _find_batch_leaves(self, flat_inputs: list[Any], labels: Tensor | None) -> list[int]:
        """Indices of the leaves to mix: Images, Videos and Masks; else the first plain tensor."""
        explicit = [
            i for i, x in enumerate(flat_inputs) if isinstance(x, (tv_tensors.Image, tv_tensors.Video, tv_tensors.Mask))
        ]
        if any(not isinstance(flat_inputs[i], tv_tensors.Mask) for i in explicit):
            return explicit
        plain = [i for i, x in enumerate(flat_inputs) if _is_pure_tensor(x) and x is not labels]
        return explicit + plain[:1]

    def _check_leaf(self, leaf: Tensor, reference: tuple[int, int, int] | None) -> tuple[int, int, int]:
        name = type(leaf).__name__
        expected: tuple[int, ...]
        if isinstance(leaf, tv_tensors.Video):
            expected, layout = (5,), "(B, T, C, H, W)"
        elif isinstance(leaf, tv_tensors.Mask):
            expected, layout = (3, 4), "(B, H, W) or (B, 1, H, W)"
        else:
            expected, layout = (4,), "(B, C, H, W)"
        if leaf.ndim not in expected:
            raise ValueError(
                f"{type(self).__name__}() expected a batched {name} of shape {layout}, "
                f"but got {leaf.ndim} dimensions (shape {tuple(leaf.shape)}) instead."
            )
        if isinstance(leaf, tv_tensors.Mask) and leaf.ndim == 4 and leaf.shape[1] != 1:
            raise ValueError(
                f"{type(self).__name__}() expected a segmentation Mask of shape (B, H, W) or (B, 1, H, W), "
                f"but got {leaf.shape[1]} channels (shape {tuple(leaf.shape)})."
            )
        if leaf.is_complex():
            raise TypeError(f"{type(self).__name__}() does not mix complex tensors, but got dtype {leaf.dtype}.")
        size = (leaf.shape[0], leaf.shape[-2], leaf.shape[-1])
        if reference is not None and size != reference:
            raise ValueError(
                f"All batches given to {type(self).__name__}() must share batch size, height and width "
                f"(B, H, W): {reference} != {size} ({name} of shape {tuple(leaf.shape)})."
            )
        if size[1] * size[2] == 0:
            raise ValueError(
                f"{type(self).__name__}() needs images with at least one pixel, but got shape {tuple(leaf.shape)}."
            )
        return size

    def _validate(self, inputs: Any, flat_inputs: list[Any]) -> tuple[list[int], Tensor | None]:
        for x in flat_inputs:
            if isinstance(x, self._unsupported):
                raise TypeError(
                    f"{type(self).__name__}() mixes batched tensors (tv_tensors.Image, Video, Mask or plain tensors), "
                    f"but got a {type(x).__module__}.{type(x).__name__}: PIL images are single images (convert and "
                    "batch them first), and bounding boxes and keypoints cannot be mixed by a pixel mask."
                )
        labels = None if self._labels_getter is None else self._labels_getter(inputs)
        if self._labels_getter is not None and not isinstance(labels, Tensor):
            raise TypeError(f"The labels must be a tensor, but got {type(labels).__name__} instead.")
        leaves = self._find_batch_leaves(flat_inputs, labels)
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
            _masks._check_labels(labels, num_classes=self.num_classes, batch_size=reference[0])
        self._check_batch(flat_inputs[leaves[0]])
        return leaves, labels

    def _check_batch(self, batch: Tensor) -> None:
        """Hook for subclass-specific checks of the first batch leaf (runs before any change)."""

    # ---------------------------------------------------------------------------------------
    # The mix
    # ---------------------------------------------------------------------------------------

    def forward(self, *inputs: Any) -> Any:
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        leaves, labels = self._validate(inputs, flat_inputs)
        params = self.make_params([flat_inputs[i] for i in leaves])
        params["labels"] = labels
        flat_outputs = list(flat_inputs)
        for i in leaves:
            flat_outputs[i] = self.transform(flat_inputs[i], params)
        if labels is not None:
            for i, x in enumerate(flat_inputs):
                if x is labels:
                    flat_outputs[i] = self.transform(x, params)
        return tree_unflatten(flat_outputs, spec)

    def _build_masks(self, batch: Tensor) -> tuple[Tensor | None, tuple[int, int, int, int] | None]:
        raise NotImplementedError

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        batch = flat_inputs[0]
        masks, box = self._build_masks(batch)
        size, device = batch.shape[0], batch.device
        if masks is None:
            lam = torch.zeros(size, dtype=_lam_dtype(device), device=device)
        elif box is not None:
            # One mask for the whole batch: measure it once.
            lam = _masks.mask_fractions(masks[:1], dtype=_lam_dtype(device)).expand(size)
        else:
            lam = _masks.mask_fractions(masks, dtype=_lam_dtype(device))
        return {"masks": masks, "box": box, "lam": lam}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt is params["labels"]:
            return _masks.mix_labels(
                inpt, params["lam"], num_classes=self.num_classes, label_smoothing=self.label_smoothing
            )
        if not isinstance(inpt, Tensor):
            return inpt
        masks = params["masks"]
        if masks is None:
            return inpt
        if self.inplace and params["box"] is not None:
            _masks._paste_box_(inpt.as_subclass(Tensor), params["box"])
            return inpt
        plain = inpt.as_subclass(Tensor)
        squeeze = isinstance(inpt, tv_tensors.Mask) and plain.ndim == 4
        target = plain[:, 0] if squeeze else plain
        out = _masks.paste(target, masks, inplace=self.inplace)
        if self.inplace:
            return inpt
        if squeeze:
            out = out[:, None]
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def _draw_apply(self, size: int) -> Tensor | bool:
        """Whether to mix: one bool for the batch, or a (B,) bool tensor with ``per_sample``."""
        if self.per_sample:
            if self.p == 1.0:
                return torch.ones(size, dtype=torch.bool)
            return torch.rand(size, generator=self.generator) < self.p
        if self.p == 1.0:
            return True
        return bool(torch.rand(1, generator=self.generator) < self.p)


class CutMix(_MixTransform):
    """CutMix: paste a random box from the partner image; mix labels by the pasted pixel fraction.

    Paper: `CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features
    <https://arxiv.org/abs/1905.04899>`_ (Yun et al., ICCV 2019).

    A drop-in for :class:`torchvision.transforms.v2.CutMix`: same arguments, same input
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
        self.alpha = _check_alpha(alpha)

    def _build_masks(self, batch: Tensor) -> tuple[Tensor | None, tuple[int, int, int, int] | None]:
        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        apply = self._draw_apply(size)
        if apply is False:
            return None, None
        boxes = _masks.sample_boxes(
            size, height, width, alpha=self.alpha, per_sample=self.per_sample, generator=self.generator
        )
        if isinstance(apply, Tensor):
            boxes = boxes * apply[:, None]  # an empty box for samples left unmixed
            return _masks.boxes_to_masks(boxes, height, width, device=batch.device), None
        if size == 0:
            return _masks.boxes_to_masks(boxes, height, width, device=batch.device), None
        mask = _masks.boxes_to_masks(boxes[:1], height, width, device=batch.device)
        x1, y1, x2, y2 = boxes[0].tolist()  # a CPU tensor: no device synchronisation
        return mask.expand(size, height, width), (x1, y1, x2, y2)
