"""Pixel attribution: which partner each output sample's pixels came from, and whether it is a paste or a blend."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._labels import LabelRule, Labels, label_weight, paste_label_problem

__all__ = ["Leaf", "attribute"]


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
class Leaf:
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


def _blend_fit(leaves: list[Leaf], i: int, j: int) -> _Blend:
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


def attribute(
    i: int,
    leaves: list[Leaf],
    labels: Labels | None,
    pixels: int,
    rule: LabelRule,
    kinds: tuple[str, ...],
    pairing: list[int] | None,
    fail: Callable[[str], Exception],
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
            problem, w, w_tol = label_weight(labels, i, j)
            if problem is None:
                mixed = (True,) if n_foreign else (True, False)
                problem = paste_label_problem(w, w_tol, n_foreign, ambiguous, pixels, rule, mixed, i, j)
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
                label_problem, w, w_tol = label_weight(labels, i, j)
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


def _follow_problem(i: int, order: list[int], leaves: list[Leaf], equal: list[Tensor]) -> str | None:
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
