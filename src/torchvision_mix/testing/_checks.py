"""A black-box invariant checker for mixing transforms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["MixCheckError", "MixReport", "check_mix_transform"]


class MixCheckError(AssertionError):
    """A mixing transform broke an invariant; the message says which, for which sample, by how much."""


@dataclass
class MixReport:
    """What :func:`check_mix_transform` observed (returned when every invariant holds).

    Attributes:
        partners: for each output sample, the input sample its foreign pixels came from
            (``-1`` where no pixel differs from the sample's own, so no partner can be named).
        fractions: for each output sample, the fraction of pixels attributed to the partner.
        label_weights: for each output sample, the partner's weight recovered from the label row
            (``nan`` where the two labels are equal, so no weight can be recovered).
        images: the transform's image output.
        labels: the transform's label output.
    """

    partners: list[int]
    fractions: list[float]
    label_weights: list[float]
    images: Any = field(repr=False)
    labels: Any = field(repr=False)


def _pixels_equal(a: Tensor, b: Tensor) -> Tensor:
    """(H, W) boolean: every channel/frame of a pixel equal (NaN compares equal to NaN)."""
    eq = (a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else a == b
    return eq.reshape(-1, *a.shape[-2:]).all(dim=0)


def _soft(labels: Tensor, num_classes: int | None) -> Tensor:
    if labels.ndim == 1:
        if num_classes is None:
            raise ValueError("check_mix_transform needs num_classes for class-index labels.")
        return torch.nn.functional.one_hot(labels.long(), num_classes).double()
    return labels.double()


def check_mix_transform(
    transform: Any,
    images: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    inplace: bool = False,
    atol: float | None = None,
) -> MixReport:
    """Run ``transform(images, labels)`` and check the invariants every pixel-pasting mix must keep.

    Knows nothing of the transform's internals. It checks that:

    * the output images have the input's type, dtype, device and shape, and the labels are a
      float tensor ``(B, K)`` on the same device;
    * every output pixel equals the pixel at the same position either in the sample itself or
      in one partner sample (the same partner for the whole sample);
    * each label row is ``(1 - f) * y_i + f * y_partner`` (after ``label_smoothing``), where
      ``f`` is the fraction of pixels taken from the partner, up to float tolerance;
    * label rows sum to 1;
    * the input tensors are unchanged (unless ``inplace``, where the output must be the input).

    Pixels that are equal in the sample and its partner cannot be attributed; the label weight
    must then lie between the fraction of pixels surely taken from the partner and that fraction
    plus the ambiguous ones. Use images whose samples differ at every pixel (random float images
    do) for an exact check.

    Args:
        transform: any callable ``(images, labels) -> (images, labels)``.
        images: a batch ``(B, ..., H, W)`` (Image, Video or plain tensor).
        labels: class indices ``(B,)`` or soft labels ``(B, K)``.
        num_classes: ``K`` for class-index labels.
        label_smoothing: the ε the transform applies before mixing.
        inplace: the transform is expected to write into ``images`` and return it.
        atol: tolerance on label values; defaults to a few ulps per class of the label dtype (at
            least of float32).

    Returns:
        A :class:`MixReport` with the partners and fractions found.

    Raises:
        MixCheckError: naming the invariant, the sample and the size of the error.

    Example:
        >>> import torch
        >>> from torchvision_mix import CutMix
        >>> from torchvision_mix.testing import check_mix_transform
        >>> report = check_mix_transform(
        ...     CutMix(num_classes=3), torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), num_classes=3
        ... )
        >>> len(report.partners)
        4
    """
    before_images = images.clone()
    before_labels = labels.clone()
    out_images, out_labels = transform(images, labels)
    name = type(transform).__name__

    def fail(message: str) -> MixCheckError:
        return MixCheckError(f"{name}: {message}")

    # --- container contract ---
    if type(out_images) is not type(images):
        raise fail(f"output images are a {type(out_images).__name__}, expected {type(images).__name__}.")
    if out_images.dtype != images.dtype or out_images.device != images.device or out_images.shape != images.shape:
        raise fail(
            f"output images are {out_images.dtype} {tuple(out_images.shape)} on {out_images.device}, "
            f"expected {images.dtype} {tuple(images.shape)} on {images.device}."
        )
    if inplace:
        if out_images.data_ptr() != images.data_ptr():
            raise fail("inplace: the output images are not the input tensor.")
    else:
        if not torch.equal(images, before_images):
            raise fail("the input images were modified.")
        if not torch.equal(labels, before_labels):
            raise fail("the input labels were modified.")
    if not isinstance(out_labels, Tensor) or not out_labels.is_floating_point() or out_labels.ndim != 2:
        got = f"{out_labels.dtype} {tuple(out_labels.shape)}" if isinstance(out_labels, Tensor) else type(out_labels)
        raise fail(f"output labels must be a float tensor (B, K), but got {got}.")
    if out_labels.device != images.device:
        raise fail(f"output labels are on {out_labels.device}, expected {images.device}.")

    batch = images.shape[0]
    soft = _soft(before_labels, num_classes).cpu()
    if soft.shape[0] != batch or out_labels.shape != soft.shape:
        raise fail(f"output labels have shape {tuple(out_labels.shape)}, expected {tuple(soft.shape)}.")
    k = soft.shape[1]
    if label_smoothing:
        soft = soft * (1.0 - label_smoothing) + label_smoothing / k
    got_labels = out_labels.detach().double().cpu()
    if atol is None:  # a few ulps per class; λ computed in float32 is within tolerance
        atol = 8 * k * max(torch.finfo(out_labels.dtype).eps, torch.finfo(torch.float32).eps)
    src = before_images.as_subclass(Tensor).cpu()
    out = out_images.as_subclass(Tensor).detach().cpu()
    pixels = images.shape[-2] * images.shape[-1]

    row_sums = got_labels.sum(dim=1)
    worst = int((row_sums - 1).abs().argmax()) if batch else 0
    if batch and abs(float(row_sums[worst]) - 1.0) > atol:
        raise fail(f"label row {worst} sums to {float(row_sums[worst])!r}, not 1.")

    partners: list[int] = []
    fractions: list[float] = []
    weights: list[float] = []
    for i in range(batch):
        own = _pixels_equal(out[i], src[i])
        foreign = ~own
        n_foreign = int(foreign.sum())
        if n_foreign:
            candidates = [j for j in range(batch) if j != i and bool(_pixels_equal(out[i], src[j])[foreign].all())]
            if not candidates:
                ys, xs = foreign.nonzero()[0].tolist()
                raise fail(
                    f"sample {i}: the pixel at (y={ys}, x={xs}) matches neither the sample nor any single partner "
                    f"at the same position ({n_foreign} pixels differ from the sample)."
                )
        else:
            # Nothing visibly pasted: any sample (itself included) may have given pixels equal to its own.
            candidates = list(range(batch))
        problems = []
        for j in candidates:
            ambiguous = int((own & _pixels_equal(src[i], src[j])).sum())
            problem, w = _label_problem(got_labels[i], soft[i], soft[j], n_foreign, ambiguous, pixels, atol)
            if problem is None:
                partners.append(j if n_foreign else -1)
                fractions.append(n_foreign / pixels)
                weights.append(w)
                break
            problems.append(f"partner {j}: {problem}" if n_foreign or len(candidates) == 1 else problem)
        else:
            raise fail(f"sample {i}: {problems[0]}")
    return MixReport(partners, fractions, weights, out_images, out_labels)


def _label_problem(
    row: Tensor, own: Tensor, other: Tensor, n_foreign: int, ambiguous: int, pixels: int, atol: float
) -> tuple[str | None, float]:
    """Why ``row`` is not ``(1 - f) * own + f * other`` for a feasible pixel fraction ``f``, and the weight."""
    f_low, f_high = n_foreign / pixels, (n_foreign + ambiguous) / pixels
    w = _weight(row, own, other)
    if w is None:
        if torch.allclose(row, own, rtol=0, atol=atol):
            return None, float("nan")
        err = float((row - own).abs().max())
        return f"the two labels are equal, but the output label differs from them by {err:.3g}.", float("nan")
    if not _fits(row, own, other, w, atol):
        return "its label row is not a mix of its own label and the partner's.", w
    # A label error of atol moves the recovered weight by atol / |other - own|.
    w_tol = atol / max(float((other - own).norm()), atol)
    if not f_low - w_tol <= w <= f_high + w_tol:
        expected = f"{f_low:.9g}" if ambiguous == 0 else f"in [{f_low:.9g}, {f_high:.9g}]"
        error = min(abs(w - f_low), abs(w - f_high))
        return f"the label weight is {w:.9g} but the fraction of its pixels is {expected} (error {error:.3g}).", w
    return None, w


def _weight(row: Tensor, own: Tensor, other: Tensor) -> float | None:
    """Least-squares ``f`` in ``row = (1 - f) * own + f * other``; ``None`` when own == other."""
    diff = other - own
    norm = float((diff * diff).sum())
    if norm == 0.0:
        return None
    return float(((row - own) * diff).sum()) / norm


def _fits(row: Tensor, own: Tensor, other: Tensor, w: float, atol: float) -> bool:
    return bool(torch.allclose(row, own * (1 - w) + other * w, rtol=0, atol=atol))
