"""Labels: mix them by the weight that was applied (``lam`` of :mod:`.apply`)."""

from __future__ import annotations

from torch import Tensor

from ._checks import _check_label_smoothing, _check_labels, _check_partner, _check_unit_range, _describe
from ._kernels import mix_labels_unchecked

__all__ = ["mix_labels"]


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
    _check_unit_range("lam", lam)
    label_smoothing = _check_label_smoothing(label_smoothing)
    partner = _check_partner(partner, batch, labels.device)
    return mix_labels_unchecked(labels, lam, num_classes=num_classes, partner=partner, label_smoothing=label_smoothing)
