"""The bases every mix is built on: find the inputs, validate, build the weight, apply, mix the labels.

Two public bases, each asking a subclass for one thing: :class:`MaskMix` for the boolean mask
(:meth:`MaskMix.make_masks`, or boxes through :meth:`MaskMix.make_boxes`), :class:`BlendMix` for
the partner's blend weight (:meth:`BlendMix.make_weights`). :class:`_MixBase` holds what they and
the switch :class:`~torchvision_mix.RandomMix` share: inputs, validation, ``p``, the label-rule
hook :meth:`_MixBase.label_weights`, labels, pickling. :meth:`_MixBase.make_params` returns the
parameters of one call as a dict (see there), which a switch combines.
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from ._core import _checks
from ._core._kernels import blend_dtype, box_areas, mix_labels_unchecked, paste_box
from ._core.apply import apply, mask_fractions
from ._core.build import boxes_to_masks
from ._inputs import UnsupportedInputError, _default_labels_getter, _is_pure_tensor, _main_batch, _parse_labels_getter

__all__ = ["BlendMix", "MaskMix", "UnsupportedInputError"]


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


def _plain(x: Tensor) -> Tensor:
    """``x`` as a plain tensor (torch.compile cannot trace ``as_subclass`` on a plain tensor)."""
    return x if type(x) is Tensor else x.as_subclass(Tensor)


def _lam_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class _MixBase(Transform):
    """What every mix of this package shares: inputs, validation, ``p``, labels, pickling."""

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
        _checks._check_num_classes(num_classes)
        label_smoothing = _checks._check_label_smoothing(label_smoothing)
        _checks._check_generator(generator)
        self.num_classes = num_classes
        self._p = _checks._check_p(p)
        self.per_sample = _checks._check_bool("per_sample", per_sample)
        self.inplace = _checks._check_bool("inplace", inplace)
        self.label_smoothing = label_smoothing
        self.generator = generator
        self._labels_getter = _parse_labels_getter(labels_getter)

    @property
    def blends(self) -> bool:
        """Whether the mix blends pixels (then segmentation masks, which hold class ids, are refused)."""
        return False

    @property
    def p(self) -> float:
        """Probability of mixing a batch (of mixing each sample with ``per_sample``).

        May be set between batches, e.g. raised linearly over training (the CutMix paper's
        "scheduled CutMix"); the value is checked on every assignment.
        """
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = _checks._check_p(value)

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

    def label_weights(self, lam: Tensor, applied: Tensor, **extras: Any) -> Tensor:
        """The label rule: the partner's weight in each label row. Default: ``lam``, the measured pixel weight.

        Args:
            lam: ``(B,)`` the partner's mean weight in each output sample, measured on what was
                built (the exact pasted fraction for a mask; the blend weight for a blend).
            applied: ``(B,)`` bool, the samples that were mixed (the others have ``lam == 0``).
            extras: what :meth:`MaskMix.make_masks` returned beside ``"masks"`` (a dict
                return), e.g. a per-sample score the rule reads.

        Return a float tensor ``(B,)`` in [0, 1] on ``lam``'s device; the base sets the weight of
        samples that were not mixed to 0. Overriding this deliberately breaks "label weight =
        pixel fraction" (CutMix's ``label_rule="one_hot"`` does); the testing kit checks such a
        rule through its ``label_rule=`` argument.
        """
        return lam

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
            if self.blends:
                raise UnsupportedInputError(
                    f"{me}() blends pixels, but a segmentation Mask holds class ids, which cannot be blended: "
                    "mix masks with mask mixes (CutMix, FMix, ...), switched by RandomMix([...]), which refuses "
                    "a blend for masks on the first batch rather than on the batches that draw it."
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
        if leaf.dtype == torch.bool and self.blends:
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
            _checks._check_labels(labels, num_classes=self.num_classes, batch_size=reference[0])
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

    def make_params(
        self, flat_inputs: list[Any], *, applied: Tensor | bool | None = None, **side_inputs: Any
    ) -> dict[str, Any]:
        """The parameters of one call, built on the batch's device.

        ``flat_inputs`` are the leaves to mix (the first image or video drives the mix), ``side_inputs``
        what :meth:`get_side_inputs` found. ``applied`` (for switches such as
        :class:`~torchvision_mix.RandomMix`): ``True``, ``False`` or a ``(B,)`` bool CPU tensor of
        the samples to mix; ``None`` draws it from ``p``. Returns a dict: ``masks`` (bool
        ``(B, H, W)``: pasted pixels) or ``None``; ``box`` (``(x1, y1, x2, y2)`` when ``masks`` is
        that one box for every sample, which allows a region-only paste) or ``None``; ``blend``
        (``(B,)`` partner weights of a blend, in the dtype it is computed in) or ``None``; ``lam``
        (``(B,)`` the partner's measured mean weight); ``label_weights`` (``(B,)`` the partner's
        weight in the labels, from :meth:`label_weights`); ``applied`` (``(B,)`` bool).
        """
        batch = _plain(_main_batch(flat_inputs))
        size = batch.shape[0]
        if applied is None:
            # p == 1 mixes every sample, per sample too: nothing to gate.
            applied = True if self._p == 1.0 else self._draw_apply(size)
        lam_dtype = _lam_dtype(batch.device)
        if applied is False:
            zeros = torch.zeros(size, dtype=lam_dtype, device=batch.device)
            none = torch.zeros(size, dtype=torch.bool, device=batch.device)
            return {"masks": None, "box": None, "blend": None, "lam": zeros, "label_weights": zeros, "applied": none}
        mixed = _applied_on(applied, size, batch.device)
        params, extras = self._build(batch, mixed if isinstance(applied, Tensor) else None, side_inputs)
        params["applied"] = mixed
        weights = self.label_weights(params["lam"], mixed, **extras)
        weights = self._checked_label_weights(weights, size, params["lam"])
        params["label_weights"] = weights * mixed if isinstance(applied, Tensor) else weights
        return params

    def _build(self, batch: Tensor, mixed: Tensor | None, side_inputs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        """The weights of one call (see :meth:`make_params`) and the extras for :meth:`label_weights`.

        ``mixed``: the ``(B,)`` bool samples to mix, on the batch's device, or ``None`` for all.
        """
        raise NotImplementedError(f"{type(self).__name__} must derive from MaskMix or BlendMix.")

    def _checked_label_weights(self, weights: Any, size: int, lam: Tensor) -> Tensor:
        name = f"{type(self).__name__}.label_weights()"
        if not isinstance(weights, Tensor) or weights.shape != (size,) or not weights.is_floating_point():
            raise ValueError(
                f"{name} must return a float tensor of shape ({size},), "
                f"but returned {_checks._describe(weights, dtype=True)}."
            )
        if weights.device != lam.device:
            raise ValueError(f"{name} must return weights on {lam.device}, but returned them on {weights.device}.")
        _checks._check_unit_range(name, weights)
        return weights

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt is params["labels"]:
            # Checked in forward() before anything was changed.
            return mix_labels_unchecked(
                inpt,
                params["label_weights"],
                num_classes=self.num_classes,
                partner=None,
                label_smoothing=self.label_smoothing,
            )
        masks, blend = params["masks"], params["blend"]
        if not isinstance(inpt, Tensor) or (masks is None and blend is None):
            return inpt
        plain = _plain(inpt)
        if params["box"] is not None and not (plain.requires_grad and torch.is_grad_enabled()):
            out = paste_box(plain, params["box"], inplace=self.inplace)
        else:
            squeeze = isinstance(inpt, tv_tensors.Mask) and plain.ndim == 4
            target = plain[:, 0] if squeeze else plain
            out = apply(target, masks=masks, weights=blend, inplace=self.inplace)
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


def _gated(masks: Tensor, mixed: Tensor) -> Tensor:
    """``masks & mixed[:, None, None]``: the masks of the samples not mixed emptied."""
    if torch.compiler.is_compiling():  # byte views break inductor's vectorised CPU code
        return masks & mixed[:, None, None]
    # As bytes: a bool `&` runs element by element on the CPU, about 3 times slower.
    return (masks.view(torch.uint8) & mixed.view(torch.uint8)[:, None, None]).view(torch.bool)


def _check_cpu_or(device: torch.device, hook: str, what: str, value: Tensor) -> None:
    """What a hook returned lies on the CPU (drawn there) or on the batch's ``device``."""
    if value.device.type != "cpu" and value.device != device:
        raise ValueError(
            f"{hook} must return {what} on the CPU or on the batch's device {device}, "
            f"but returned them on {value.device}."
        )


class MaskMix(_MixBase):
    """The public base of the mask family: subclass it and implement :meth:`make_masks` (or :meth:`make_boxes`).

    A mask mix pastes, for every output sample ``i``, the pixels of its partner ``i - 1`` where a
    boolean mask is ``True``, and mixes the labels by the exact fraction of pasted pixels. The
    subclass only builds the mask; everything else comes from here, as in
    :class:`~torchvision_mix.CutMix`: every input structure torchvision's ``v2.CutMix`` takes
    (``(images, labels)``, the ``[images, labels]`` list a DataLoader yields, dicts with
    pass-through keys), ``tv_tensors.Image``/``Video``/``Mask`` and plain tensors (types kept),
    validation before anything changes, ``num_classes``, ``labels_getter``, ``p``, ``per_sample``
    (``p`` drawn per sample), ``inplace``, ``label_smoothing``, ``generator``, pickling (so
    :class:`~torchvision_mix.MixCollate` with ``spawn`` workers), no host synchronisation.

    The fast paths the built-in mixes take are open to every subclass:

    * :meth:`make_masks` may return one mask ``(1, H, W)`` for the whole batch: it is measured
      once and expanded, with no per-sample work (FMix and GridMix do this without
      ``per_sample``);
    * a box mix implements :meth:`make_boxes` instead: one box ``(1, 4)`` on the CPU is pasted
      region-only, moving just the box's pixels (CutMix does this);
    * :meth:`label_weights` is the label rule (CutMix's ``label_rule``); :meth:`make_masks` may
      return ``{"masks": masks, **extras}`` to hand the rule what it needs.

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

    def make_masks(self, batch: Tensor, **side_inputs: Any) -> Tensor | dict[str, Any]:
        """Build the masks: boolean ``(B, H, W)`` on ``batch.device``, ``True`` where ``i`` takes its partner's pixel.

        Args:
            batch: the batch as a plain tensor ``(B, ..., H, W)`` (the first image or video leaf,
                else the segmentation mask), on its device. Read its shape, device and, if the
                mix needs them, its pixels; never modify it.
            side_inputs: what :meth:`get_side_inputs` found.

        Return ``(B, H, W)``, or ``(1, H, W)``: one mask for every sample (measured once), or a
        dict ``{"masks": masks, **extras}`` whose extras reach :meth:`label_weights`. Sample
        ``i``'s partner is sample ``i - 1`` (sample ``0``'s is ``B - 1``). Draw random numbers
        from ``self.generator`` on the CPU, and per sample when ``self.per_sample``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_masks(self, batch) or make_boxes(self, batch)."
        )

    def make_boxes(self, batch: Tensor, **side_inputs: Any) -> Tensor | None:
        """For a box mix: the pasted boxes, instead of :meth:`make_masks`. Default ``None`` (not a box mix).

        Return an integer tensor ``(B, 4)`` of ``x1, y1, x2, y2`` (half-open, ``0 <= x1 <= x2 <= W``,
        ``0 <= y1 <= y2 <= H``, as :func:`torchvision_mix.masks.sample_boxes` draws them), on the
        CPU or on ``batch.device``, or ``(1, 4)``: one box for every sample. One box on the CPU is
        pasted region-only (just its pixels move; under ``torch.compile`` or autograd it is
        pasted as a mask). The arguments are those of :meth:`make_masks`.
        """
        return None

    def _build(self, batch: Tensor, mixed: Tensor | None, side_inputs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        size, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        extras: dict[str, Any] = {}
        box = None
        boxes = self.make_boxes(batch, **side_inputs)
        lam_dtype = _lam_dtype(batch.device)
        if boxes is not None:
            boxes = self._checked_boxes(boxes, batch)
            if boxes.shape[0] == 1 and mixed is None and boxes.device.type == "cpu":
                # Read from a CPU tensor: no device synchronisation. Under torch.compile the mask
                # is pasted instead: box coordinates as Python ints would recompile for new boxes.
                box = None if torch.compiler.is_compiling() else tuple(boxes[0].tolist())
            boxes = boxes.to(batch.device, non_blocking=True)
            if mixed is not None:  # the samples not mixed get an empty box
                boxes = torch.where(mixed[:, None], boxes.expand(size, 4), 0)
            masks = boxes_to_masks(boxes, height, width)
            # A box's pasted count is its clipped area: its mask's exact count, without reading the mask.
            lam = box_areas(boxes, height, width).to(torch.float64).div_(height * width).to(lam_dtype)
            if masks.shape[0] == 1 and size != 1:  # one box for the batch
                masks, lam = masks.expand(size, height, width), lam.expand(size)
            return {"masks": masks, "box": box, "blend": None, "lam": lam}, extras
        made = self.make_masks(batch, **side_inputs)
        if isinstance(made, dict) and "masks" in made:
            extras = {k: v for k, v in made.items() if k != "masks"}
            made = made["masks"]
        masks = self._checked_masks(made, batch)
        if masks.shape[0] == 1 and size != 1:
            # One mask for the batch: measured once, expanded.
            lam = mask_fractions(masks, dtype=lam_dtype).expand(size)
            masks = masks.expand(size, height, width)
            if mixed is not None:
                masks, lam = _gated(masks, mixed), lam * mixed
        else:
            if mixed is not None:
                masks = _gated(masks, mixed)
            lam = mask_fractions(masks, dtype=lam_dtype)
        return {"masks": masks, "box": box, "blend": None, "lam": lam}, extras

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
        if masks.ndim != 3 or masks.shape[0] not in (size[0], 1) or tuple(masks.shape[1:]) != size[1:]:
            raise ValueError(
                f"{name}.make_masks() must return masks of shape (B, H, W) = {size} or (1, H, W) = {(1, *size[1:])}, "
                f"but returned shape {tuple(masks.shape)}."
            )
        if masks.device != batch.device:
            raise ValueError(
                f"{name}.make_masks() must return masks on the batch's device {batch.device}, "
                f"but returned them on {masks.device}."
            )
        return masks

    def _checked_boxes(self, boxes: Any, batch: Tensor) -> Tensor:
        name = type(self).__name__
        size = batch.shape[0]
        if not isinstance(boxes, Tensor) or not _checks._is_integer(boxes):
            raise TypeError(
                f"{name}.make_boxes() must return an integer tensor of shape ({size}, 4) or (1, 4), "
                f"but returned {_checks._describe(boxes, dtype=True)}."
            )
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] not in (size, 1):
            raise ValueError(
                f"{name}.make_boxes() must return boxes of shape ({size}, 4) or (1, 4), "
                f"but returned shape {tuple(boxes.shape)}."
            )
        _check_cpu_or(batch.device, f"{name}.make_boxes()", "boxes", boxes)
        return boxes


class BlendMix(_MixBase):
    """The public base of blends: subclass it and implement :meth:`make_weights`.

    A blend mixes every pixel of output sample ``i`` with its partner ``i - 1``:
    ``(1 - w_i) * x_i + w_i * x_{i-1}``, and the labels by the same ``w_i``. The subclass only
    draws the weights; everything else comes from here, as in :class:`~torchvision_mix.MixUp`
    (written on it): input structures and types, validation before anything changes, ``p``,
    ``per_sample``, ``inplace``, ``label_smoothing``, ``generator``, pickling, no host
    synchronisation, and the dtype rules of :func:`torchvision_mix.masks.blend` (computed in
    float32, float64 for float64; integer images such as uint8 rounded to the nearest integer,
    at most half a grey level from the exact blend). Segmentation masks, which hold class ids,
    are refused with :class:`~torchvision_mix.UnsupportedInputError`. A blend may be a child of
    :class:`~torchvision_mix.RandomMix`.

    The arguments are those of :class:`MaskMix`.

    Example:
        >>> import torch
        >>> from torchvision_mix import BlendMix
        >>> class HalfBlend(BlendMix):  # every mixed sample is half its partner
        ...     def make_weights(self, batch):
        ...         return torch.full((1,), 0.5)
        >>> images, labels = HalfBlend(num_classes=3)(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))
        >>> labels.tolist()
        [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    """

    @property
    def blends(self) -> bool:
        return True

    def make_weights(self, batch: Tensor, **side_inputs: Any) -> Tensor:
        """The partner's blend weight of every sample: a float tensor ``(B,)``, or ``(1,)`` for all, in [0, 1].

        On the CPU (drawn from ``self.generator``, per sample when ``self.per_sample``) or on
        ``batch.device``. The arguments are those of :meth:`MaskMix.make_masks`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement make_weights(self, batch).")

    def _build(self, batch: Tensor, mixed: Tensor | None, side_inputs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        size = batch.shape[0]
        name = type(self).__name__
        weights = self.make_weights(batch, **side_inputs)
        if (
            not isinstance(weights, Tensor)
            or not weights.is_floating_point()
            or weights.ndim != 1
            or weights.shape[0] not in (size, 1)
        ):
            raise ValueError(
                f"{name}.make_weights() must return a float tensor of shape ({size},) or (1,), "
                f"but returned {_checks._describe(weights, dtype=True)}."
            )
        _check_cpu_or(batch.device, f"{name}.make_weights()", "weights", weights)
        _checks._check_unit_range(f"{name}.make_weights()", weights)
        if weights.shape[0] != size:
            weights = weights.expand(size)
        w = weights.to(device=batch.device, dtype=blend_dtype(batch.dtype), non_blocking=True)
        if mixed is not None:
            w = w * mixed  # 0 or the weight itself, exactly
        return {"masks": None, "box": None, "blend": w, "lam": w.to(_lam_dtype(batch.device))}, {}
