"""Batch-mixing transforms for ``torchvision.transforms.v2``."""

from __future__ import annotations

import collections.abc
import contextlib
from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from . import masks as _masks

__all__ = ["AttentiveCutMix", "CutMix"]

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


def _main_batch(leaves: list[Any]) -> Tensor:
    """The leaf that drives the mix: the first image/video (or plain tensor), else the first mask."""
    return next((x for x in leaves if not isinstance(x, tv_tensors.Mask)), leaves[0])


def _lam_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


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
        _masks._check_num_classes(num_classes)
        label_smoothing = _masks._check_label_smoothing(label_smoothing)
        _masks._check_generator(generator)
        self.num_classes = num_classes
        self.p = _check_probability(p)
        self.per_sample = bool(per_sample)
        self.inplace = bool(inplace)
        self.label_smoothing = label_smoothing
        self.generator = generator
        self._labels_getter = _parse_labels_getter(labels_getter)

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
    # Input discovery and validation: everything is checked before anything is changed.
    # ---------------------------------------------------------------------------------------

    def _find_batch_leaves(self, flat_inputs: list[Any], exclude: list[Any]) -> list[int]:
        """Indices of the leaves to mix: Images, Videos and Masks; else the first plain tensor.

        ``exclude`` holds the labels and other side inputs, never taken for the image batch.
        """
        explicit = [
            i for i, x in enumerate(flat_inputs) if isinstance(x, (tv_tensors.Image, tv_tensors.Video, tv_tensors.Mask))
        ]
        if any(not isinstance(flat_inputs[i], tv_tensors.Mask) for i in explicit):
            return explicit
        plain = [i for i, x in enumerate(flat_inputs) if _is_pure_tensor(x) and all(x is not e for e in exclude)]
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

    def _validate(self, inputs: Any, flat_inputs: list[Any]) -> tuple[list[int], Tensor | None, dict[str, Any]]:
        for x in flat_inputs:
            if isinstance(x, self._unsupported):
                raise TypeError(
                    f"{type(self).__name__}() mixes batched tensors (tv_tensors.Image, Video, Mask or plain tensors), "
                    f"but got a {type(x).__module__}.{type(x).__name__}: PIL images are single images (convert and "
                    "batch them first), and bounding boxes and keypoints cannot be mixed by a pixel mask."
                )
        labels = self._get_labels(inputs, flat_inputs)
        extras = self._find_extras(inputs)
        leaves = self._find_batch_leaves(flat_inputs, [labels, *extras.values()])
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
        self._check_batch(_main_batch([flat_inputs[i] for i in leaves]), extras)
        return leaves, labels, extras

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

    def _find_extras(self, inputs: Any) -> dict[str, Any]:
        """Hook: side inputs a subclass reads from the sample (passed through unchanged)."""
        return {}

    def _check_batch(self, batch: Tensor, extras: dict[str, Any]) -> None:
        """Hook: subclass-specific checks of the batch and side inputs (runs before any change)."""

    # ---------------------------------------------------------------------------------------
    # The mix
    # ---------------------------------------------------------------------------------------

    def forward(self, *inputs: Any) -> Any:
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        leaves, labels, extras = self._validate(inputs, flat_inputs)
        params = self.make_params([flat_inputs[i] for i in leaves], **extras)
        params["labels"] = labels
        flat_outputs = list(flat_inputs)
        for i in leaves:
            flat_outputs[i] = self.transform(flat_inputs[i], params)
        if labels is not None:
            for i, x in enumerate(flat_inputs):
                if x is labels:
                    flat_outputs[i] = self.transform(x, params)
        return tree_unflatten(flat_outputs, spec)

    def _build_masks(self, batch: Tensor, **extras: Any) -> tuple[Tensor | None, tuple[int, int, int, int] | None]:
        raise NotImplementedError

    def make_params(self, flat_inputs: list[Any], **extras: Any) -> dict[str, Any]:
        batch = _main_batch(flat_inputs)
        masks, box = self._build_masks(batch, **extras)
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
            # Checked in forward() before anything was changed.
            return _masks._mix_labels(
                inpt, params["lam"], num_classes=self.num_classes, partner=None, label_smoothing=self.label_smoothing
            )
        if not isinstance(inpt, Tensor):
            return inpt
        masks = params["masks"]
        if masks is None:
            return inpt
        plain = inpt.as_subclass(Tensor)
        if params["box"] is not None and not (plain.requires_grad and torch.is_grad_enabled()):
            out = _masks._paste_box(plain, params["box"], inplace=self.inplace)
            if self.inplace:
                return inpt
            return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out
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
        self.alpha = _masks._check_concentration("alpha", alpha)

    def _build_masks(self, batch: Tensor, **extras: Any) -> tuple[Tensor | None, tuple[int, int, int, int] | None]:
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


def _default_attention_getter(inputs: Any) -> Tensor | None:
    """The value of a dict key containing 'attention' or 'heatmap' (case-insensitive), if any."""
    if isinstance(inputs, (tuple, list)) and len(inputs) >= 2:
        inputs = inputs[1]
    if not isinstance(inputs, collections.abc.Mapping):
        return None
    for key in inputs:
        if isinstance(key, str) and ("attention" in key.lower() or "heatmap" in key.lower()):
            value: Tensor | None = inputs[key]
            return value
    return None


def _to_float(images: Tensor) -> Tensor:
    if images.is_floating_point():
        return images
    if images.dtype == torch.bool:
        return images.float()
    return images.float().div_(torch.iinfo(images.dtype).max)


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


class AttentiveCutMix(_MixTransform):
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
            feature maps ``(B, C', h, w)``. It runs once per batch, without gradients, on the
            batch's device (a module must already be there); a module is run in eval mode and
            then left in the mode it had. ``None`` (default): the paper's torchvision
            ImageNet-pretrained ResNet-50 up to its last stage, built on first use by
            :func:`torchvision_mix.attention.feature_extractor`; it expects images in [0, 1] and
            normalises them itself.
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
            ``"default"`` takes the value of a dict key containing ``attention`` or ``heatmap``
            (case-insensitive) when there is one; a callable gets the transform's input and
            returns a tensor or ``None``; ``None`` never looks. Attention is heatmaps
            ``(B, h, w)`` or feature maps ``(B, C, h, w)`` of the samples themselves (not of
            their donors), pooled to the grid like the extractor's output; it is passed through
            unchanged.
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
            alpha = _masks._check_concentration("alpha", alpha)
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
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a callable or None, but got {type(preprocess).__name__}.")
        if not (attention_getter is None or callable(attention_getter) or attention_getter == "default"):
            raise ValueError(f"attention_getter must be 'default', a callable or None, but got {attention_getter!r}.")
        self.grid_size = grid_size
        self.top_k = top_k
        self.alpha = alpha
        self.autocast = bool(autocast)
        self.channels_last = bool(channels_last)
        self.feature_extractor = feature_extractor
        self.preprocess = preprocess
        self._attention_getter = _default_attention_getter if attention_getter == "default" else attention_getter

    # --- side inputs -------------------------------------------------------------------------

    def _find_extras(self, inputs: Any) -> dict[str, Any]:
        attention = None if self._attention_getter is None else self._attention_getter(inputs)
        return {"attention": attention}

    def _check_batch(self, batch: Tensor, extras: dict[str, Any]) -> None:
        height, width = batch.shape[-2], batch.shape[-1]
        if self.grid_size > height or self.grid_size > width:
            raise ValueError(
                f"The grid ({self.grid_size}x{self.grid_size}) is larger than the images ({height}x{width}): "
                "some cells would hold no pixel. Use a smaller grid_size."
            )
        attention = extras["attention"]
        if attention is None:
            if isinstance(batch, tv_tensors.Mask):
                raise TypeError(
                    "AttentiveCutMix() needs images to compute attention, but got only segmentation masks; "
                    "pass the images too, or precomputed attention."
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
            from .attention import feature_extractor

            default = feature_extractor("resnet50")
            self._default_extractor = default
        if next(default.parameters()).device != device:
            default.to(device)
        return default

    def _heatmaps(self, batch: Tensor) -> Tensor:
        from .attention import heatmaps

        x = batch.as_subclass(Tensor)
        if x.ndim == 5:
            x = x[:, x.shape[1] // 2]
        x = _to_float(x)
        if self.preprocess is not None:
            x = self.preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        extractor = self._extractor(x.device)
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
        return heatmaps(features.float(), self.grid_size)

    def _draw_top_k(self, size: int) -> int | Tensor:
        if self.top_k is not None:
            return self.top_k
        assert self.alpha is not None
        cells = self.grid_size * self.grid_size
        t = _masks.sample_beta(size if self.per_sample else 1, alpha=self.alpha, generator=self.generator)
        k = (t * cells).round().clamp(1, cells).long()
        return k if self.per_sample else int(k[0])

    def _build_masks(self, batch: Tensor, **extras: Any) -> tuple[Tensor | None, tuple[int, int, int, int] | None]:
        from .attention import heatmaps

        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        apply = self._draw_apply(size)
        if apply is False:
            return None, None
        top_k = self._draw_top_k(size)
        attention = extras.get("attention")
        if attention is None:
            heat = self._heatmaps(batch)
        else:
            heat = heatmaps(attention.to(batch.device, non_blocking=True), self.grid_size)
        donor_heat = heat.roll(1, 0)  # sample i receives the cells of its donor i - 1
        cells = _masks.top_k_cells(donor_heat, top_k)
        if isinstance(apply, Tensor):
            cells &= apply.to(cells.device, non_blocking=True)[:, None, None]
        return _masks.grid_to_masks(cells, height, width), None
