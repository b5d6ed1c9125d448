"""A black-box invariant checker for mixing transforms."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from torchvision import tv_tensors

from ._cases import MixInputs
from ._labels import LabelRule, Labels, check_label_output, parse_rule
from ._pixels import Leaf, attribute
from ._structure import (
    flatten,
    get_labels,
    is_plain,
    skeleton,
    snapshot,
    structure_problem,
    tensors_equal,
    values_equal,
)

__all__ = ["MIX_KINDS", "MixCheckError", "MixReport", "check_mix_transform"]

#: What a sample of the output can be: ``"none"`` (its own pixels and label), ``"paste"`` (some
#: pixels from one partner at the same positions), ``"blend"`` (every pixel the same blend of its
#: own and one partner's).
MIX_KINDS: tuple[str, ...] = ("none", "paste", "blend")


class MixCheckError(AssertionError):
    """A mixing transform broke an invariant; the message says which, for which sample, by how much."""


@dataclass
class MixReport:
    """What :func:`check_mix_transform` observed (returned when every invariant holds).

    Attributes:
        partners: for each output sample, the input sample its foreign pixels came from
            (``-1`` where no pixel differs from the sample's own, so no partner can be named).
        fractions: for each output sample, the partner's share measured on the pixels: the
            fraction of pixels surely taken from the partner for a paste, the estimated weight for
            a blend (``nan`` where the two samples are equal), 0 where nothing was mixed.
        label_weights: for each output sample, the partner's weight recovered from the label row
            (``nan`` where the two labels are equal, so no weight can be recovered, and where
            there are no labels).
        images: the transform's output for the image batch (the first image or video, else the
            first segmentation mask).
        labels: the transform's label output (``None`` without labels).
        kinds: for each output sample, ``"none"``, ``"paste"`` or ``"blend"`` (see :data:`MIX_KINDS`).
        outputs: the transform's whole output.
    """

    partners: list[int]
    fractions: list[float]
    label_weights: list[float]
    images: Any = field(repr=False)
    labels: Any = field(repr=False)
    kinds: list[str] = field(default_factory=list)
    outputs: Any = field(default=None, repr=False)


def check_mix_transform(
    transform: Callable[..., Any],
    *inputs: Any,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    inplace: bool = False,
    atol: float | None = None,
    labels_getter: Any = "default",
    label_rule: str | LabelRule = "area",
    kinds: Collection[str] = MIX_KINDS,
    require_mixing: bool = False,
    require_pairing: str | Sequence[int] | None = None,
) -> MixReport:
    """Call ``transform(*inputs)`` and check the invariants every batch-mixing transform must keep.

    Knows nothing of the transform's internals. ``inputs`` are what the transform is called with:
    ``images, labels`` (two arguments), or one structure of tuples, lists and dicts, e.g.
    ``(images, labels)``, ``[images, labels]``, ``{"image": images, "mask": masks, "labels":
    labels, "id": ids}``, or a :class:`~torchvision_mix.testing.MixInputs` drawn by
    :func:`~torchvision_mix.testing.strategies.mix_inputs` (its ``num_classes`` is then used).

    In the input it finds, as torchvision's ``v2.CutMix`` does: the labels (by
    ``labels_getter``: item 1 of a tuple or list, or the ``labels``/``*label*`` key of a dict),
    the batches to mix (every ``tv_tensors.Image``, ``Video`` and ``Mask``; without an Image or
    Video, the first plain tensor that is not the labels), and pass-through values (the rest).
    It checks that:

    * the output has the input's structure (containers, keys, lengths); the batches keep their
      type, dtype, device and shape; the labels come back as a float tensor ``(B, K)`` on the
      batch's device; pass-through values come back unchanged (the same object, or equal);
    * every output sample is either **pasted** (each pixel equals the pixel at the same position
      in the sample itself or in one partner, the same partner for the whole sample, in every
      batch: segmentation masks move with the image pixels), or **blended** (every pixel is
      ``(1 - w) * x_i + w * x_j`` for one partner ``j`` and one ``w`` in [0, 1], up to the
      rounding of the dtype: half a grey level for integer dtypes, half an ulp for
      float16/bfloat16), never both; a blend cannot mix segmentation masks;
    * each label row is ``(1 - w) * y_i + w * y_partner`` (after ``label_smoothing``), where
      ``w`` is given by ``label_rule`` from the pasted fraction for a paste (the fraction itself
      by default), and is the pixels' blend weight for a blend, up to float tolerance; rows
      whose input labels sum to 1 still sum to 1;
    * the inputs are unchanged (unless ``inplace``, where each output batch must be the input
      tensor; labels and pass-through values are never to be modified).

    Pixels that are equal in the sample and its partner cannot be attributed; the label weight
    must then be what the rule gives for some fraction between the pixels surely taken from the
    partner and those plus the ambiguous ones. Use images whose samples differ at every pixel
    (random float images do, and so do :func:`~torchvision_mix.testing.strategies.image_batches`)
    for an exact check. A blend weight is estimated by least squares over the elements where the
    two samples differ; the label weight must lie in the range of weights that fit every element.

    Args:
        transform: any callable taking ``*inputs`` and returning the same structure.
        inputs: the transform's arguments (see above).
        num_classes: ``K`` for class-index labels.
        label_smoothing: the ε the transform applies before mixing.
        inplace: the transform is expected to write into the input batches and return them.
        atol: tolerance on label values; defaults to a few ulps per class of the label dtype (at
            least of float32).
        labels_getter: ``"default"``, a callable returning the labels from the input (the
            transform's single argument, or the tuple of its arguments), or ``None`` (no labels).
        label_rule: the partner's label weight of a pasted sample: ``"area"`` (the pasted
            fraction), ``"one_hot"``, ``"complete"`` (see :data:`LABEL_RULES`) or a callable
            ``(fraction: float, mixed: bool) -> weight``, which may also take the keywords
            ``sample`` and ``partner`` (the output sample's index and its partner's) for a rule
            that reads more than the area, e.g. the donor's attention. For a sample with no
            visibly pasted pixel, ``mixed`` may be either. Blends always weigh their labels by the
            blend weight.
        kinds: what an output sample may be, a subset of :data:`MIX_KINDS`: e.g.
            ``("none", "paste")`` for a mask mix, ``("none", "blend")`` for MixUp.
        require_mixing: fail unless at least one sample was mixed (pasted pixels that differ
            from its own, a blend, or a nonzero label weight); needs two samples that differ.
        require_pairing: ``None`` (any partner), ``"previous"`` (the partner of sample ``i`` is
            ``i - 1``, sample 0's is ``B - 1``, as torchvision's ``v2.CutMix`` pairs), or the
            partner of every sample. Samples whose partner cannot be named (no pixel differs from
            their own) are accepted.

    Returns:
        A :class:`MixReport` with the partners, fractions, label weights and kinds found.

    Raises:
        MixCheckError: naming the invariant, the sample and the size of the error.

    Example:
        >>> import torch
        >>> from torchvision import tv_tensors
        >>> from torchvision_mix import CutMix
        >>> from torchvision_mix.testing import check_mix_transform
        >>> images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
        >>> report = check_mix_transform(CutMix(num_classes=3), images, labels, num_classes=3)
        >>> len(report.partners)
        4
        >>> sample = {"image": tv_tensors.Image(images), "mask": tv_tensors.Mask(torch.zeros(4, 8, 8)),
        ...           "labels": labels, "path": ["a.png", "b.png", "c.png", "d.png"]}
        >>> report = check_mix_transform(
        ...     CutMix(num_classes=3, generator=torch.Generator().manual_seed(1)), sample, num_classes=3,
        ...     kinds=("none", "paste"), require_pairing="previous", require_mixing=True,
        ... )
        >>> report.kinds, report.partners
        (['paste', 'paste', 'paste', 'paste'], [3, 0, 1, 2])
    """
    if len(inputs) == 1 and isinstance(inputs[0], MixInputs):
        case = inputs[0]
        inputs = case.args
        num_classes = case.num_classes if num_classes is None else num_classes
    if not inputs:
        raise TypeError("check_mix_transform needs the transform's inputs, e.g. (transform, images, labels).")
    rule = parse_rule(label_rule)
    kinds = _parse_kinds(kinds)
    tree = inputs if len(inputs) > 1 else inputs[0]
    flat = flatten(tree)
    before = [snapshot(leaf) for _, leaf in flat]

    labels_obj = get_labels(tree, labels_getter)
    label_at = next((k for k, (_, leaf) in enumerate(flat) if labels_obj is not None and leaf is labels_obj), None)
    if labels_obj is not None and label_at is None:
        raise TypeError(f"labels_getter returned a {type(labels_obj).__name__} that is not a tensor of the input.")
    explicit = [k for k, (_, x) in enumerate(flat) if isinstance(x, (tv_tensors.Image, tv_tensors.Video))]
    masks = [k for k, (_, x) in enumerate(flat) if isinstance(x, tv_tensors.Mask)]
    if not explicit:
        explicit = [k for k, (_, x) in enumerate(flat) if is_plain(x) and k != label_at][:1]
    batch_at = sorted(explicit + masks)
    if not batch_at:
        raise TypeError(
            f"check_mix_transform found no batch to mix in the input: {[type(x).__name__ for _, x in flat]}."
        )
    main = (explicit or masks)[0]

    expected_skeleton = skeleton(tree)
    outputs = transform(*inputs)
    name = type(transform).__name__

    def fail(message: str) -> MixCheckError:
        return MixCheckError(f"{name}: {message}")

    # --- container contract ---
    after = flatten(tree)
    if skeleton(tree) != expected_skeleton or any(a is not b for (_, a), (_, b) in zip(after, flat, strict=True)):
        raise fail("the input structure was modified (an entry of the caller's tuple, list or dict was replaced).")
    got_skeleton = skeleton(outputs)
    if len(inputs) > 1 and got_skeleton != "leaf" and got_skeleton[0] in ("tuple", "list"):
        got_skeleton = ("tuple", got_skeleton[1])  # several arguments come back as a tuple or a list
    problem = structure_problem(expected_skeleton, got_skeleton)
    if problem:
        raise fail(problem)
    out_flat = flatten(outputs)

    for k in batch_at:
        path, x = flat[k]
        out = out_flat[k][1]
        label = f"output images{'' if len(batch_at) == 1 else f' (output{path})'}" if k == main else f"output{path}"
        are = "are" if k == main else "is"
        if type(out) is not type(x):
            raise fail(f"{label} {are} a {type(out).__name__}, expected {type(x).__name__}.")
        if out.dtype != x.dtype or out.device != x.device or out.shape != x.shape:
            raise fail(
                f"{label} {are} {out.dtype} {tuple(out.shape)} on {out.device}, "
                f"expected {x.dtype} {tuple(x.shape)} on {x.device}."
            )
        if inplace and out.data_ptr() != x.data_ptr():
            raise fail(f"inplace: the {label} {are} not the input tensor.")
    for k, (path, x) in enumerate(flat):
        if isinstance(x, Tensor) and not (inplace and k in batch_at) and not tensors_equal(x, before[k]):
            what = "images were" if k == main else "labels were" if k == label_at else f"input{path} was"
            raise fail(f"the input {what} modified." if k in (main, label_at) else f"{what} modified.")
    for k, (path, x) in enumerate(flat):
        if k in batch_at or k == label_at:
            continue
        out = out_flat[k][1]
        if out is not x and not values_equal(out, before[k]):
            raise fail(f"output{path} is a pass-through value, but it came back changed.")

    ref = flat[main][1]
    batch, height, width = ref.shape[0], ref.shape[-2], ref.shape[-1]
    for k in batch_at:
        x = flat[k][1]
        if (x.shape[0], x.shape[-2], x.shape[-1]) != (batch, height, width):
            raise fail(f"input{flat[k][0]} has (B, H, W) {tuple(x.shape)}, unlike {tuple(ref.shape)}.")
    labels: Labels | None = None
    out_labels = None
    if label_at is not None:
        out_labels = out_flat[label_at][1]
        labels = check_label_output(out_labels, before[label_at], num_classes, label_smoothing, atol, ref, fail)
    pairing = _parse_pairing(require_pairing, batch)

    leaves = [
        Leaf(
            flat[k][0],
            before[k].as_subclass(Tensor).cpu(),
            out_flat[k][1].as_subclass(Tensor).detach().cpu(),
            isinstance(flat[k][1], tv_tensors.Mask),
        )
        for k in [main, *(k for k in batch_at if k != main)]  # the image batch first
    ]
    pixels = height * width
    report = MixReport([], [], [], out_flat[main][1], out_labels, [], outputs)
    for i in range(batch):
        partner, kind, fraction, w = attribute(i, leaves, labels, pixels, rule, kinds, pairing, fail)
        report.partners.append(partner)
        report.kinds.append(kind)
        report.fractions.append(fraction)
        report.label_weights.append(w)
    if require_mixing and all(kind == "none" for kind in report.kinds):
        raise fail(
            f"require_mixing: no sample of the batch of {batch} was mixed "
            "(every sample kept its own pixels and its own label)."
        )
    return report


def _parse_kinds(kinds: Collection[str]) -> tuple[str, ...]:
    if isinstance(kinds, str) or not set(kinds) <= set(MIX_KINDS) or not kinds:
        raise ValueError(f"kinds must be a non-empty collection of {MIX_KINDS}, but got {kinds!r}.")
    return tuple(kinds)


def _parse_pairing(require_pairing: str | Sequence[int] | None, batch: int) -> list[int] | None:
    if require_pairing is None:
        return None
    if isinstance(require_pairing, str):
        if require_pairing != "previous":
            raise ValueError(f"require_pairing must be None, 'previous' or a sequence, but got {require_pairing!r}.")
        return [(i - 1) % batch for i in range(batch)]
    pairing = [int(j) for j in require_pairing]
    if len(pairing) != batch or not all(0 <= j < batch for j in pairing):
        raise ValueError(f"require_pairing must give a partner in [0, {batch}) for each of the {batch} samples.")
    return pairing
