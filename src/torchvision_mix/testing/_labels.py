"""Label checks: the label rules of pasted samples, the output label rows and the partner's weight in them."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "LABEL_RULES",
    "LabelRule",
    "Labels",
    "check_label_output",
    "label_weight",
    "parse_rule",
    "paste_label_problem",
]

#: A label rule: the partner's expected label weight from the fraction of pasted pixels and
#: whether the sample was mixed at all. A callable may also take the keywords ``sample`` and
#: ``partner`` (the output sample's index and its partner's), for rules that read more than the
#: area, such as AttentiveCutMix's ``label_rule="attention"`` (the partner's attention).
LabelRule = Callable[..., float]


def _takes_indices(rule: LabelRule) -> bool:
    try:
        parameters = inspect.signature(rule).parameters
    except (TypeError, ValueError):
        return False
    return ("sample" in parameters and "partner" in parameters) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


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

# Counts of pasted pixels a label rule is evaluated at when many pixels are ambiguous.
_MAX_RULE_POINTS = 4097


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
class Labels:
    rows: Tensor  # output rows, float64 on the CPU
    soft: Tensor  # input rows after smoothing, float64 on the CPU
    atol: float
    smoothing: float = 0.0  # the label_smoothing the check assumes


def _smoothing_hint(labels: Labels, i: int, j: int) -> str:
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


def label_weight(labels: Labels, i: int, j: int) -> tuple[str | None, float, float]:
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


def paste_label_problem(
    w: float,
    w_tol: float,
    n_foreign: int,
    ambiguous: int,
    pixels: int,
    rule: LabelRule,
    mixed: Sequence[bool],
    sample: int,
    partner: int,
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
    indices = {"sample": sample, "partner": partner} if _takes_indices(rule) else {}
    for count in counts:
        for m in mixed:
            expected_w = float(rule(count / pixels, m, **indices))
            if abs(w - expected_w) <= w_tol:
                return None
            if abs(w - expected_w) < best_error:
                best, best_error, best_fraction = expected_w, abs(w - expected_w), count / pixels
    fraction = f"{f_low:.9g}" if ambiguous == 0 else f"in [{f_low:.9g}, {f_high:.9g}]"
    return (
        f"the label weight is {w:.9g} but the label rule gives {best:.9g} for the fraction of its pixels "
        f"{fraction} (nearest at {best_fraction:.9g}, error {best_error:.3g})."
    )


def parse_rule(label_rule: str | LabelRule) -> LabelRule:
    if isinstance(label_rule, str):
        if label_rule not in LABEL_RULES:
            raise ValueError(f"label_rule must be one of {list(LABEL_RULES)} or a callable, but got {label_rule!r}.")
        return LABEL_RULES[label_rule]
    if not callable(label_rule):
        raise TypeError(f"label_rule must be a name or a callable, but got {type(label_rule).__name__}.")
    return label_rule


def check_label_output(
    out_labels: Any,
    before: Tensor,
    num_classes: int | None,
    label_smoothing: float,
    atol: float | None,
    ref: Tensor,
    fail: Callable[[str], Exception],
) -> Labels:
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
    return Labels(rows, soft, atol, label_smoothing)
