"""A black-box invariant checker for mixing transforms."""

from __future__ import annotations

import collections.abc
import copy
import functools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

from ._cases import MixInputs

__all__ = ["LABEL_RULES", "MIX_KINDS", "MixCheckError", "MixReport", "check_mix_transform"]

#: A label rule: the partner's expected label weight from the fraction of pasted pixels and
#: whether the sample was mixed at all.
LabelRule = Callable[[float, bool], float]


def _area(fraction: float, mixed: bool) -> float:
    return fraction


def _one_hot(fraction: float, mixed: bool) -> float:
    return 1.0 if fraction > 0.5 else 0.0


def _complete(fraction: float, mixed: bool) -> float:
    return 0.5 if mixed else 0.0


#: The named label rules of pasted samples: ``"area"`` (the pixel fraction), ``"one_hot"`` (the
#: label of the larger portion: 1 when more than half the pixels are the partner's, else 0) and
#: ``"complete"`` (0.5 for every mixed sample, whatever the area).
LABEL_RULES: dict[str, LabelRule] = {"area": _area, "one_hot": _one_hot, "complete": _complete}

#: What a sample of the output can be: ``"none"`` (its own pixels and label), ``"paste"`` (some
#: pixels from one partner at the same positions), ``"blend"`` (every pixel the same blend of its
#: own and one partner's).
MIX_KINDS: tuple[str, ...] = ("none", "paste", "blend")

# Counts of pasted pixels a label rule is evaluated at when many pixels are ambiguous.
_MAX_RULE_POINTS = 4097


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


# -------------------------------------------------------------------------------------------
# Structures: flatten tuples, lists and dicts to (path, leaf) pairs
# -------------------------------------------------------------------------------------------


def _flatten(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Tensor):
        return [(path, tree)]
    if isinstance(tree, collections.abc.Mapping):
        return [pair for key, value in tree.items() for pair in _flatten(value, f"{path}[{key!r}]")]
    if isinstance(tree, (tuple, list)):
        return [pair for i, value in enumerate(tree) for pair in _flatten(value, f"{path}[{i}]")]
    return [(path, tree)]


def _skeleton(tree: Any) -> Any:
    """The containers of ``tree`` without its leaves: what an output's structure must equal."""
    if isinstance(tree, Tensor):
        return "leaf"
    if isinstance(tree, collections.abc.Mapping):
        return ("dict", {key: _skeleton(value) for key, value in tree.items()})
    if isinstance(tree, (tuple, list)):
        return ("tuple" if isinstance(tree, tuple) else "list", [_skeleton(value) for value in tree])
    return "leaf"


def _structure_problem(expected: Any, got: Any, path: str = "output") -> str | None:
    if expected == got:
        return None
    if expected == "leaf" or got == "leaf" or expected[0] != got[0]:
        kind = {"leaf": "a value", "dict": "a dict", "tuple": "a tuple", "list": "a list"}
        return (
            f"{path} is {kind[got if got == 'leaf' else got[0]]}, expected "
            f"{kind[expected if expected == 'leaf' else expected[0]]} as in the input."
        )
    if expected[0] == "dict":
        if set(expected[1]) != set(got[1]):
            return f"{path} has the keys {sorted(map(repr, got[1]))}, expected {sorted(map(repr, expected[1]))}."
        for key in expected[1]:
            problem = _structure_problem(expected[1][key], got[1][key], f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if len(expected[1]) != len(got[1]):
        return f"{path} has {len(got[1])} items, expected {len(expected[1])}."
    for i, (e, g) in enumerate(zip(expected[1], got[1], strict=True)):
        problem = _structure_problem(e, g, f"{path}[{i}]")
        if problem:
            return problem
    return None


def _is_plain(x: Any) -> bool:
    return isinstance(x, Tensor) and not isinstance(x, tv_tensors.TVTensor)


def _find_labels(inputs: Any) -> Any:
    """The labels where torchvision's ``v2.CutMix`` looks for them by default, or ``None``."""
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            return None
        inputs = inputs[1]
    if _is_plain(inputs):
        return inputs
    if isinstance(inputs, collections.abc.Mapping):
        keys = [key for key in inputs if isinstance(key, str)]
        for candidates in ([k for k in keys if k.lower() == "labels"], [k for k in keys if "label" in k.lower()]):
            if candidates:
                return inputs[candidates[0]]
    return None


def _snapshot(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().clone()
    try:
        return copy.deepcopy(x)
    except Exception:  # an object that cannot be copied is compared by identity only
        return x


def _tensors_equal(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    a, b = a.as_subclass(Tensor), b.as_subclass(Tensor)
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and type(a) is type(b) and _tensors_equal(a, b)
    try:
        return bool(a == b)
    except Exception:
        return False


# -------------------------------------------------------------------------------------------
# Pixels
# -------------------------------------------------------------------------------------------


def _equal_to_each(sample: Tensor, batch: Tensor) -> Tensor:
    """(B, H, W) boolean: where ``sample`` (..., H, W) equals each sample of ``batch`` (B, ..., H, W)."""
    eq = batch == sample
    if batch.is_floating_point():
        eq |= batch.isnan() & sample.isnan()
    return eq.reshape(batch.shape[0], -1, *batch.shape[-2:]).all(dim=1)


def _blend_tolerance(dtype: torch.dtype, x: Tensor, y: Tensor) -> Tensor:
    """How far a correct blend of ``x`` and ``y`` (float64) may be from the exact one, per element.

    A blend is computed in float32 (float64 for float64 pixels) and rounded to the pixel dtype:
    to the nearest integer (0.5) for integer dtypes, to the nearest representable value (half an
    ulp, at most ``eps * |value|``, or the subnormal spacing) for float16/bfloat16.
    """
    scale = x.abs() + y.abs()
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    tol = 4 * torch.finfo(compute).eps * scale
    if not dtype.is_floating_point:
        return tol + 0.5
    if dtype not in (torch.float32, torch.float64):
        info = torch.finfo(dtype)
        tol = tol + info.eps * torch.maximum(x.abs(), y.abs()) + info.eps * info.tiny
    return tol


@dataclass
class _Leaf:
    path: str
    src: Tensor  # the input, plain, on the CPU
    out: Tensor  # the output, plain, on the CPU
    is_mask: bool


@dataclass
class _Blend:
    low: float  # feasible partner weights: [low, high]
    high: float
    estimate: float  # least-squares weight (nan when the two samples are equal everywhere)
    problem: str | None


def _blend_fit(leaves: list[_Leaf], i: int, j: int) -> _Blend:
    """Whether output sample ``i`` is ``(1 - w) x_i + w x_j`` for one ``w`` in [0, 1], within rounding."""
    low, high = 0.0, 1.0
    num = den = 0.0
    low_at = high_at = ""
    for leaf in leaves:
        x, y, o = (t.double() for t in (leaf.src[i], leaf.src[j], leaf.out[i]))
        finite = x.isfinite() & y.isfinite() & o.isfinite()
        if not bool(finite.all()):
            same = ((o == x) | (o.isnan() & x.isnan())) & ((x == y) | (x.isnan() & y.isnan()))
            if not bool((same | finite).all()):
                return _Blend(0, 1, math.nan, f"output{leaf.path}: non-finite values that no blend gives")
            x, y, o = (torch.where(finite, t, 0.0) for t in (x, y, o))
        d, r = y - x, o - x
        tol = _blend_tolerance(leaf.src.dtype, x, y)
        flat_d, flat_r, flat_tol = d.flatten(), r.flatten(), tol.flatten()
        constant = flat_d == 0
        excess = torch.where(constant, flat_r.abs() - flat_tol, -1.0)
        if constant.any() and float(excess.max()) > 0:
            k = int(excess.argmax())
            return _Blend(
                0,
                1,
                math.nan,
                f"output{leaf.path} element {_index(d.shape, k)} is {float(o.flatten()[k])!r}, but the two "
                f"samples both hold {float(x.flatten()[k])!r} there (tolerance {float(flat_tol[k]):.3g})",
            )
        varying = ~constant
        if varying.any():
            dv, rv, tv = flat_d[varying], flat_r[varying], flat_tol[varying]
            a, b = (rv - tv) / dv, (rv + tv) / dv
            lo, hi = torch.minimum(a, b), torch.maximum(a, b)
            k_lo, k_hi = int(lo.argmax()), int(hi.argmin())
            index = varying.nonzero().flatten()
            if float(lo[k_lo]) > low:
                low, low_at = float(lo[k_lo]), f"output{leaf.path} element {_index(d.shape, int(index[k_lo]))}"
            if float(hi[k_hi]) < high:
                high, high_at = float(hi[k_hi]), f"output{leaf.path} element {_index(d.shape, int(index[k_hi]))}"
            num += float((rv * dv).sum())
            den += float((dv * dv).sum())
    if low > high:
        if low_at and high_at:
            problem = f"{low_at} needs a weight >= {low:.6g} but {high_at} one <= {high:.6g}"
        else:
            where = low_at or high_at
            problem = f"{where} needs a weight outside [0, 1] ({low if low_at else high:.6g})"
        return _Blend(low, high, math.nan, problem)
    estimate = min(max(num / den, low), high) if den else math.nan
    return _Blend(low, high, estimate, None)


def _index(shape: torch.Size, flat: int) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


# -------------------------------------------------------------------------------------------
# Labels
# -------------------------------------------------------------------------------------------


def _soft(labels: Tensor, num_classes: int | None) -> Tensor:
    if labels.ndim == 1:
        if num_classes is None:
            raise ValueError("check_mix_transform needs num_classes for class-index labels.")
        return torch.nn.functional.one_hot(labels.long(), num_classes).double()
    return labels.double()


def _weight(row: Tensor, own: Tensor, other: Tensor) -> float | None:
    """Least-squares ``f`` in ``row = (1 - f) * own + f * other``; ``None`` when own == other."""
    diff = other - own
    norm = float((diff * diff).sum())
    if norm == 0.0:
        return None
    return float(((row - own) * diff).sum()) / norm


def _fits(row: Tensor, own: Tensor, other: Tensor, w: float, atol: float) -> bool:
    return bool(torch.allclose(row, own * (1 - w) + other * w, rtol=0, atol=atol))


@dataclass
class _Labels:
    rows: Tensor  # output rows, float64 on the CPU
    soft: Tensor  # input rows after smoothing, float64 on the CPU
    atol: float
    smoothing: float = 0.0  # the label_smoothing the check assumes


def _smoothing_hint(labels: _Labels, i: int, j: int) -> str:
    """`` It is one with label_smoothing=ε'...`` when row ``i`` is a mix under another smoothing, else ``""``.

    Fits ``row = a * own + b * other + c`` (own, other: the rows smoothed as the check assumes):
    under a smoothing ``ε'`` the coefficients of the labels sum to ``(1 - ε') / (1 - ε)``.
    """
    row, own, other = labels.rows[i], labels.soft[i], labels.soft[j]
    basis = torch.stack([own, other, torch.ones_like(own)], dim=1)
    solution = torch.linalg.lstsq(basis, row[:, None]).solution[:, 0]
    if not torch.allclose(basis @ solution, row, rtol=0, atol=labels.atol):
        return ""
    a, b = float(solution[0]), float(solution[1])
    smoothing = 1.0 - (a + b) * (1.0 - labels.smoothing)
    smoothing = 0.0 if abs(smoothing) <= 1e-6 else smoothing  # rounding around no smoothing
    if abs(smoothing - labels.smoothing) <= 1e-6 or not 0.0 <= smoothing < 1.0:
        return ""
    weight = f" (partner weight {b / (a + b):.6g})" if torch.any(own != other) and a + b else ""
    return (
        f" It is one{weight} with label_smoothing={smoothing:.6g}, but the check assumes "
        f"label_smoothing={labels.smoothing:g}: pass the transform's label_smoothing to the check."
    )


def _label_weight(labels: _Labels, i: int, j: int) -> tuple[str | None, float, float]:
    """The partner's weight in label row ``i`` with partner ``j`` (nan when their labels are equal),
    its tolerance, or why the row is not a mix of the two labels."""
    row, own, other = labels.rows[i], labels.soft[i], labels.soft[j]
    w = _weight(row, own, other)
    if w is None:
        if torch.allclose(row, own, rtol=0, atol=labels.atol):
            return None, math.nan, math.inf
        err = float((row - own).abs().max())
        problem = f"the two labels are equal, but the output label differs from them by {err:.3g}."
        return problem + _smoothing_hint(labels, i, j), math.nan, 0.0
    if not _fits(row, own, other, w, labels.atol):
        return "its label row is not a mix of its own label and the partner's." + _smoothing_hint(labels, i, j), w, 0.0
    # A label error of atol moves the recovered weight by atol / |other - own|.
    return None, w, labels.atol / max(float((other - own).norm()), labels.atol)


def _paste_label_problem(
    w: float, w_tol: float, n_foreign: int, ambiguous: int, pixels: int, rule: LabelRule, mixed: Sequence[bool]
) -> str | None:
    """Why weight ``w`` is not what ``rule`` gives for any feasible count of pasted pixels."""
    if math.isnan(w):
        return None
    f_low, f_high = n_foreign / pixels, (n_foreign + ambiguous) / pixels
    if rule is _area:
        if f_low - w_tol <= w <= f_high + w_tol:
            return None
        expected = f"{f_low:.9g}" if ambiguous == 0 else f"in [{f_low:.9g}, {f_high:.9g}]"
        error = min(abs(w - f_low), abs(w - f_high))
        return f"the label weight is {w:.9g} but the fraction of its pixels is {expected} (error {error:.3g})."
    counts: Sequence[int]
    if ambiguous + 1 <= _MAX_RULE_POINTS:
        counts = range(n_foreign, n_foreign + ambiguous + 1)
    else:
        step = ambiguous / (_MAX_RULE_POINTS - 1)
        counts = sorted({n_foreign + round(k * step) for k in range(_MAX_RULE_POINTS)})
    best, best_error, best_fraction = math.nan, math.inf, math.nan
    for count in counts:
        for m in mixed:
            expected_w = float(rule(count / pixels, m))
            if abs(w - expected_w) <= w_tol:
                return None
            if abs(w - expected_w) < best_error:
                best, best_error, best_fraction = expected_w, abs(w - expected_w), count / pixels
    fraction = f"{f_low:.9g}" if ambiguous == 0 else f"in [{f_low:.9g}, {f_high:.9g}]"
    return (
        f"the label weight is {w:.9g} but the label rule gives {best:.9g} for the fraction of its pixels "
        f"{fraction} (nearest at {best_fraction:.9g}, error {best_error:.3g})."
    )


# -------------------------------------------------------------------------------------------
# The checker
# -------------------------------------------------------------------------------------------


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
            ``(fraction: float, mixed: bool) -> weight``. For a sample with no visibly pasted
            pixel, ``mixed`` may be either. Blends always weigh their labels by the blend weight.
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
    rule = _parse_rule(label_rule)
    kinds = _parse_kinds(kinds)
    tree = inputs if len(inputs) > 1 else inputs[0]
    flat = _flatten(tree)
    before = [_snapshot(leaf) for _, leaf in flat]

    labels_obj = _get_labels(tree, labels_getter)
    label_at = next((k for k, (_, leaf) in enumerate(flat) if labels_obj is not None and leaf is labels_obj), None)
    if labels_obj is not None and label_at is None:
        raise TypeError(f"labels_getter returned a {type(labels_obj).__name__} that is not a tensor of the input.")
    explicit = [k for k, (_, x) in enumerate(flat) if isinstance(x, (tv_tensors.Image, tv_tensors.Video))]
    masks = [k for k, (_, x) in enumerate(flat) if isinstance(x, tv_tensors.Mask)]
    if not explicit:
        explicit = [k for k, (_, x) in enumerate(flat) if _is_plain(x) and k != label_at][:1]
    batch_at = sorted(explicit + masks)
    if not batch_at:
        raise TypeError(
            f"check_mix_transform found no batch to mix in the input: {[type(x).__name__ for _, x in flat]}."
        )
    main = (explicit or masks)[0]

    expected_skeleton = _skeleton(tree)
    outputs = transform(*inputs)
    name = type(transform).__name__

    def fail(message: str) -> MixCheckError:
        return MixCheckError(f"{name}: {message}")

    # --- container contract ---
    after = _flatten(tree)
    if _skeleton(tree) != expected_skeleton or any(a is not b for (_, a), (_, b) in zip(after, flat, strict=True)):
        raise fail("the input structure was modified (an entry of the caller's tuple, list or dict was replaced).")
    got_skeleton = _skeleton(outputs)
    if len(inputs) > 1 and got_skeleton != "leaf" and got_skeleton[0] in ("tuple", "list"):
        got_skeleton = ("tuple", got_skeleton[1])  # several arguments come back as a tuple or a list
    problem = _structure_problem(expected_skeleton, got_skeleton)
    if problem:
        raise fail(problem)
    out_flat = _flatten(outputs)

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
        if isinstance(x, Tensor) and not (inplace and k in batch_at) and not _tensors_equal(x, before[k]):
            what = "images were" if k == main else "labels were" if k == label_at else f"input{path} was"
            raise fail(f"the input {what} modified." if k in (main, label_at) else f"{what} modified.")
    for k, (path, x) in enumerate(flat):
        if k in batch_at or k == label_at:
            continue
        out = out_flat[k][1]
        if out is not x and not _values_equal(out, before[k]):
            raise fail(f"output{path} is a pass-through value, but it came back changed.")

    ref = flat[main][1]
    batch, height, width = ref.shape[0], ref.shape[-2], ref.shape[-1]
    for k in batch_at:
        x = flat[k][1]
        if (x.shape[0], x.shape[-2], x.shape[-1]) != (batch, height, width):
            raise fail(f"input{flat[k][0]} has (B, H, W) {tuple(x.shape)}, unlike {tuple(ref.shape)}.")
    labels: _Labels | None = None
    out_labels = None
    if label_at is not None:
        out_labels = out_flat[label_at][1]
        labels = _check_label_output(out_labels, before[label_at], num_classes, label_smoothing, atol, ref, fail)
    pairing = _parse_pairing(require_pairing, batch)

    leaves = [
        _Leaf(
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
        partner, kind, fraction, w = _attribute(i, leaves, labels, pixels, rule, kinds, pairing, fail)
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


def _parse_rule(label_rule: str | LabelRule) -> LabelRule:
    if isinstance(label_rule, str):
        if label_rule not in LABEL_RULES:
            raise ValueError(f"label_rule must be one of {list(LABEL_RULES)} or a callable, but got {label_rule!r}.")
        return LABEL_RULES[label_rule]
    if not callable(label_rule):
        raise TypeError(f"label_rule must be a name or a callable, but got {type(label_rule).__name__}.")
    return label_rule


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


def _get_labels(tree: Any, labels_getter: Any) -> Any:
    if labels_getter is None:
        return None
    if isinstance(labels_getter, str) and labels_getter == "default":
        found = _find_labels(tree)
        return found if isinstance(found, Tensor) else None
    if callable(labels_getter):
        return labels_getter(tree)
    raise ValueError(f"labels_getter must be 'default', a callable or None, but got {labels_getter!r}.")


def _check_label_output(
    out_labels: Any,
    before: Tensor,
    num_classes: int | None,
    label_smoothing: float,
    atol: float | None,
    ref: Tensor,
    fail: Callable[[str], MixCheckError],
) -> _Labels:
    if not isinstance(out_labels, Tensor) or not out_labels.is_floating_point() or out_labels.ndim != 2:
        got = f"{out_labels.dtype} {tuple(out_labels.shape)}" if isinstance(out_labels, Tensor) else type(out_labels)
        raise fail(f"output labels must be a float tensor (B, K), but got {got}.")
    if out_labels.device != ref.device:
        raise fail(f"output labels are on {out_labels.device}, expected {ref.device}.")
    soft = _soft(before, num_classes).cpu()
    if soft.shape[0] != ref.shape[0] or out_labels.shape != soft.shape:
        raise fail(f"output labels have shape {tuple(out_labels.shape)}, expected {tuple(soft.shape)}.")
    k = soft.shape[1]
    if label_smoothing:
        soft = soft * (1.0 - label_smoothing) + label_smoothing / k
    rows = out_labels.detach().double().cpu()
    if atol is None:  # a few ulps per class; λ computed in float32 is within tolerance
        atol = 8 * k * max(torch.finfo(out_labels.dtype).eps, torch.finfo(torch.float32).eps)
    # Rows sum to 1 where the input's rows do (the mix check below implies it; this says it plainly).
    sums, in_sums = rows.sum(dim=1), soft.sum(dim=1)
    normal = (in_sums - 1).abs() <= atol
    if bool(normal.any()):
        errors = torch.where(normal, (sums - 1).abs(), 0.0)
        worst = int(errors.argmax())
        if float(errors[worst]) > atol:
            raise fail(f"label row {worst} sums to {float(sums[worst])!r}, not 1.")
    return _Labels(rows, soft, atol, label_smoothing)


def _attribute(
    i: int,
    leaves: list[_Leaf],
    labels: _Labels | None,
    pixels: int,
    rule: LabelRule,
    kinds: tuple[str, ...],
    pairing: list[int] | None,
    fail: Callable[[str], MixCheckError],
) -> tuple[int, str, float, float]:
    """(partner, kind, fraction, label weight) of output sample ``i``, or raise why it is no mix."""
    batch = leaves[0].src.shape[0]
    equal = [_equal_to_each(leaf.out[i], leaf.src) for leaf in leaves]  # [leaf][j]: out[i] == src[j] per pixel
    same = functools.reduce(torch.logical_and, equal)  # in every batch
    own = same[i]
    foreign = ~own
    n_foreign = int(foreign.sum())
    order = [(i - s) % batch for s in range(1, batch + 1)]  # i - 1 first, the sample itself last
    if pairing is not None:
        order = [pairing[i]]
    problems: list[str] = []  # the first reason of each hypothesis, for the message

    # --- paste (or nothing visibly mixed) ---
    if n_foreign:
        candidates = [j for j in order if j != i and bool(same[j][foreign].all())]
        others = [j for j in range(batch) if j != i and bool(same[j][foreign].all())]
        pasted_pixels = bool(others)  # every foreign pixel from one partner, required or not
        if not candidates:
            ys, xs = foreign.nonzero()[0].tolist()
            if pairing is not None and others:
                paste_problem = (
                    f"its {n_foreign} pasted pixels come from sample {others[0]}, but require_pairing "
                    f"requires partner {order[0]} (the pixel at (y={ys}, x={xs}) differs from sample {order[0]}'s)."
                )
            else:
                partner_note = f" (required partner: {order[0]})" if pairing is not None else ""
                paste_problem = _follow_problem(i, order, leaves, equal) or (
                    f"the pixel at (y={ys}, x={xs}) matches neither the sample nor any single partner "
                    f"at the same position ({n_foreign} pixels differ from the sample){partner_note}."
                )
            if "paste" in kinds or (pairing is not None and others):
                problems.append(paste_problem)
    else:
        # Nothing visibly pasted: any sample (itself included) may have given pixels equal to its own.
        candidates, pasted_pixels = order, False
    for j in candidates:
        ambiguous = int((own & same[j]).sum())
        w, w_tol, problem = math.nan, math.inf, None
        if labels is not None:
            problem, w, w_tol = _label_weight(labels, i, j)
            if problem is None:
                mixed = (True,) if n_foreign else (True, False)
                problem = _paste_label_problem(w, w_tol, n_foreign, ambiguous, pixels, rule, mixed)
        if problem is None:
            kind = "paste" if n_foreign or (not math.isnan(w) and abs(w) > w_tol) else "none"
            if kind in kinds:
                return (j if n_foreign else -1), kind, n_foreign / pixels, w
            problem = f"it is a paste, but kinds={kinds}."
        if not problems and ("paste" in kinds or problem.startswith("it is a paste")):
            problems.append(f"partner {j}: {problem}" if n_foreign or len(candidates) == 1 else problem)

    # --- blend ---
    images = [leaf for leaf in leaves if not leaf.is_mask and leaf.src.dtype != torch.bool]
    masks = [leaf for leaf in leaves if leaf.is_mask]
    if images:  # also when blends are not allowed: then the reason says that it is one
        blend_problem, excluded = "", ""
        for j in (j for j in order if j != i):
            fit = _blend_fit(images, i, j)
            problem = fit.problem
            w = math.nan
            visible = fit.low > 0 or n_foreign > 0
            if problem is None and masks and visible:
                problem = "a segmentation mask cannot follow a blend"
            if problem is None and labels is not None:
                label_problem, w, w_tol = _label_weight(labels, i, j)
                if label_problem is not None:
                    problem = label_problem.rstrip(".")
                elif not math.isnan(w) and not fit.low - w_tol <= w <= fit.high + w_tol:
                    problem = (
                        f"the label weight is {w:.9g} but the pixels are a blend with weight "
                        f"{fit.estimate:.9g} (every element fits a weight in [{fit.low:.9g}, {fit.high:.9g}])"
                    )
            if problem is None:
                kind = "blend" if visible or (not math.isnan(w) and w != 0) else "none"
                if kind in kinds:
                    return j, kind, (fit.estimate if visible else 0.0), w
                problem = f"it is a blend with weight {fit.estimate:.6g}, but kinds={kinds}"
            said = f"As a blend with one partner (sample {j}): {problem}."
            if problem.startswith("it is a blend with weight"):  # a blend, but kinds excludes blends
                excluded = excluded or said
            blend_problem = blend_problem or said  # the first partner's reason (sample i - 1, the usual one)
        # Said only where blends are allowed and the pixels are no paste, or where kinds excludes a blend.
        if excluded or ("blend" in kinds and not pasted_pixels):
            problems.append(excluded or blend_problem)
    if not problems:
        problems.append(f"it is neither of the kinds allowed, {kinds}.")
    raise fail(f"sample {i}: {' '.join(problems)}")


def _follow_problem(i: int, order: list[int], leaves: list[_Leaf], equal: list[Tensor]) -> str | None:
    """Where another batch (a segmentation mask) does not move with the image pixels of sample ``i``.

    ``None`` unless the image batch alone is a paste from some partner (or unchanged).
    """
    if len(leaves) < 2:
        return None
    image = equal[0]
    foreign = ~image[i]
    partners = [j for j in order if j != i and bool(image[j][foreign].all())] if foreign.any() else order[:1]
    if not partners:
        return None
    j = partners[0]
    for leaf, eq in zip(leaves[1:], equal[1:], strict=True):
        bad = ~((image[i] & eq[i]) | (image[j] & eq[j]))
        if bad.any():
            y, x = bad.nonzero()[0].tolist()
            took = "the sample's own" if bool(image[i][y, x]) else f"sample {j}'s"
            holds = "the sample's own" if bool(eq[i][y, x]) else f"sample {j}'s" if bool(eq[j][y, x]) else "neither"
            first = leaves[0].path or "images"
            return (
                f"output{leaf.path} does not move with the image pixels: at (y={y}, x={x}) output{first} "
                f"holds {took} pixel, but output{leaf.path} holds {holds}."
            )
    return None
