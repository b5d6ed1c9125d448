"""Labels: mix them by the weight that was applied (``lam`` of :mod:`.apply`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import _check_label_smoothing, _check_num_classes, _check_partner, _describe
from .apply import _lerp_op

__all__ = ["mix_labels"]


def _check_labels(labels: Tensor, *, num_classes: int | None, batch_size: int | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``labels`` are valid index or soft labels.

    Index labels: a tensor ``(B,)`` of any integer dtype with values in ``[0, num_classes)``; the range is
    checked on CPU tensors only, since reading a device tensor would force a host
    synchronisation (as :func:`torch.nn.functional.one_hot` does, an out-of-range index on a GPU
    triggers a device-side error later instead). Soft labels: tensor ``(B, K)``, ``K`` equal to
    ``num_classes`` when given.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"The labels must be a tensor, but got {type(labels).__name__} instead.")
    if labels.ndim not in (1, 2):
        raise ValueError(
            "The labels must be class indices of shape (batch_size,) or soft labels of shape "
            f"(batch_size, num_classes), but got a tensor of shape {tuple(labels.shape)}."
        )
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(
            "The batch size of the labels does not match the batch size of the images: "
            f"{labels.shape[0]} != {batch_size}."
        )
    if labels.is_complex():
        raise TypeError(f"The labels must be real, but got dtype {labels.dtype}.")
    _check_num_classes(num_classes)
    if labels.ndim == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"Soft labels must have num_classes={num_classes} columns, but got shape {tuple(labels.shape)}. "
                "Leave num_classes=None to take the width from the labels."
            )
        return
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(
            "Index labels of shape (batch_size,) must be an integer tensor (any integer dtype: int64, int32, "
            f"uint8, ...), but got dtype {labels.dtype}."
        )
    if num_classes is None:
        raise ValueError("num_classes must be passed when the labels are class indices of shape (batch_size,).")
    if labels.device.type == "cpu" and labels.numel() > 0 and not torch.compiler.is_compiling():
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"Class indices must be in [0, {num_classes}), but got {bad}.")


def mix_labels(
    labels: Tensor,
    lam: Tensor,
    *,
    num_classes: int | None = None,
    partner: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Mix labels by the pasted fractions: ``out[i] = (1 - lam[i]) * y[i] + lam[i] * y[partner[i]]``.

    Args:
        labels: class indices ``(B,)`` (any integer dtype; need ``num_classes``) or soft labels ``(B, K)``.
        lam: the pasted fraction of every sample, ``(B,)`` in [0, 1] (checked on CPU tensors),
            from :func:`mask_fractions`.
        num_classes: number of classes for index labels; checked against ``K`` for soft labels.
        partner: the same ``partner`` given to :func:`paste`; ``None`` means ``i - 1`` (cyclic).
        label_smoothing: ε in [0, 1): before mixing, the target class gets ``1 - ε + ε / K``
            and every other class ``ε / K`` (soft labels become ``(1 - ε) * y + ε / K``).

    Returns:
        Soft labels ``(B, K)``: float32 for index or integer labels, otherwise the labels' dtype.
    """
    _check_labels(labels, num_classes=num_classes)
    batch = labels.shape[0]
    if not isinstance(lam, Tensor) or lam.shape != (batch,):
        got = _describe(lam)
        raise ValueError(f"lam must be a tensor of shape ({batch},), but got {got}.")
    if lam.is_complex():
        raise TypeError(f"lam must be real, but got dtype {lam.dtype}.")
    if lam.device.type == "cpu" and lam.numel() > 0 and not torch.compiler.is_compiling():
        # Read on CPU tensors only: reading a device tensor would wait for the device.
        low, high = (float(v) for v in torch.aminmax(lam if lam.is_floating_point() else lam.double()))
        if not 0.0 <= low <= high <= 1.0:  # NaN fails too
            raise ValueError(f"lam must be in [0, 1], but got values in [{low}, {high}].")
    label_smoothing = _check_label_smoothing(label_smoothing)
    partner = _check_partner(partner, batch, labels.device)
    return _mix_labels(labels, lam, num_classes=num_classes, partner=partner, label_smoothing=label_smoothing)


def _mix_labels(
    labels: Tensor, lam: Tensor, *, num_classes: int | None, partner: Tensor | None, label_smoothing: float
) -> Tensor:
    """:func:`mix_labels` on arguments already checked."""
    eps = float(label_smoothing)
    if labels.ndim == 1:
        # Index labels: write the two weights straight into a filled (B, K) tensor, never
        # materialising one-hot rows: (1 - ε) * ((1 - λ) e_i + λ e_j) + ε / K.
        assert num_classes is not None  # checked by the caller
        index = labels.long()[:, None]
        partner_index = index.roll(1, 0) if partner is None else index.index_select(0, partner)
        w = lam.to(device=labels.device, dtype=torch.float32, non_blocking=True)[:, None]
        own = 1.0 - w
        if eps > 0:
            own, w = own * (1.0 - eps), w * (1.0 - eps)
        out = torch.full((labels.shape[0], num_classes), eps / num_classes, device=labels.device)
        return out.scatter_add_(1, index, own).scatter_add_(1, partner_index, w)
    y = labels if labels.is_floating_point() else labels.to(torch.float32)
    if eps > 0:
        # Half precision is smoothed in float32 and rounded once, as torch.compile computes it.
        wide = torch.promote_types(y.dtype, torch.float32)
        y = (y.to(wide) * (1.0 - eps) + eps / y.shape[1]).to(y.dtype)
    y_partner = y.roll(1, 0) if partner is None else y.index_select(0, partner)
    w = lam.to(device=y.device, dtype=y.dtype, non_blocking=True)[:, None]
    if torch.compiler.is_compiling() and not (y.requires_grad and torch.is_grad_enabled()):
        return _lerp_op(y, y_partner, w)  # ATen's kernel: the eager result, bit for bit
    return torch.lerp(y, y_partner, w)
