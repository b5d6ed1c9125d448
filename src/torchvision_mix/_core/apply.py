"""Stage 3 of every mix: **apply** the weight to the pixels and measure it.

A mix is a per-pixel weight of the partner: a boolean mask for the CutMix family, a per-sample
constant for MixUp, or both in one batch (disjoint samples, as a per-sample switch between the
two makes). :func:`paste` moves the partner's pixels where a mask is ``True``; :func:`blend`
mixes every pixel by a per-sample weight; :func:`apply` does either or both in one step.
``lam``, the mean weight of the partner in each sample, is :func:`mask_fractions` (an exact
count) for masks and the weight itself for blends; :mod:`.labels` mixes the labels by it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import _check_partner, _check_weights, _describe
from ._kernels import (
    blend_dtype,
    blend_into,
    count_true,
    lerp_compiled,
    paste_blend_fits,
    paste_blend_into,
    words_select,
)

__all__ = ["apply", "blend", "blend_dtype", "mask_fractions", "paste"]


def mask_fractions(masks: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """The exact fraction of ``True`` pixels of each mask ``(B, H, W)``: the pasted fraction ``lam``.

    Counts are integers, divided once in float64 and then cast to ``dtype``.

    Example:
        >>> m = torch.zeros(2, 7, 7, dtype=torch.bool)
        >>> m[0, :2, :3] = True
        >>> mask_fractions(m, dtype=torch.float64).tolist() == [6 / 49, 0.0]
        True
    """
    if not isinstance(masks, Tensor) or masks.ndim != 3 or masks.dtype != torch.bool:
        got = _describe(masks, dtype=True)
        raise ValueError(f"masks must be a boolean tensor of shape (B, H, W), but got {got}.")
    pixels = masks.shape[1] * masks.shape[2]
    if pixels == 0:
        raise ValueError(f"masks must hold at least one pixel, but got shape {tuple(masks.shape)}.")
    # Byte and word views of the mask: inductor compiles these (only bool-typed views broke it).
    counts = count_true(masks.reshape(masks.shape[0], pixels).view(torch.uint8))
    lam = counts.to(torch.float64).div_(pixels)
    return lam if dtype == torch.float64 else lam.to(dtype)


def paste(images: Tensor, masks: Tensor, *, partner: Tensor | None = None, inplace: bool = False) -> Tensor:
    """Paste partner pixels where ``masks`` is ``True``: ``out[i] = where(mask[i], x[partner[i]], x[i])``.

    Works on anything laid out as ``(B, ..., H, W)``: images ``(B, C, H, W)``, videos
    ``(B, T, C, H, W)`` (the same mask on every frame), segmentation masks ``(B, H, W)``. Keeps
    dtype, device and memory format (channels_last stays channels_last).

    Args:
        images: the batch, of shape ``(B, ..., H, W)``.
        masks: boolean tensor ``(B, H, W)`` on the same device.
        partner: int64 indices ``(B,)``: sample ``i`` takes pixels from sample ``partner[i]``.
            ``None`` means ``i - 1`` (cyclic), which needs no gather.
        inplace: write into ``images`` and return it. Otherwise ``images`` is left untouched and a
            new tensor is returned.

    Returns:
        The mixed batch (``images`` itself when ``inplace``).
    """
    _check_masks(images, masks)
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    partner = _check_partner(partner, batch, images.device)
    m = masks.reshape(batch, *([1] * (images.ndim - 3)), height, width)
    if (images.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        # Autograd cannot track out= writes, and inductor fuses the plain form into one kernel:
        # the plain (differentiable) form.
        rolled = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        mixed = torch.where(m, rolled, images)
        return images.copy_(mixed) if inplace else mixed
    # The output is allocated before any temporary: on the CPU that order measured ~20% faster.
    out = images if inplace else torch.empty_like(images)
    source: Tensor | None = None
    if partner is not None or inplace:  # a copy of the partners (in place, they are overwritten)
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
    if words_select(masks, images, source, out):
        return out
    if source is not None:
        return torch.where(m, source, images, out=out)
    if batch > 0:
        # Two views instead of a rolled copy: rows 1.. take from rows 0..B-2, row 0 from row B-1.
        torch.where(m[1:], images[:-1], images[1:], out=out[1:])
        torch.where(m[:1], images[-1:], images[:1], out=out[:1])
    return out


def _check_masks(images: Tensor, masks: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim < 3:
        got = _describe(images)
        raise ValueError(f"images must be a tensor of shape (B, ..., H, W), but got {got}.")
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool or masks.shape != (batch, height, width):
        got = _describe(masks, dtype=True)
        raise ValueError(f"masks must be a boolean tensor of shape {(batch, height, width)}, but got {got}.")
    if masks.device != images.device:
        raise ValueError(f"masks are on {masks.device} but images on {images.device}.")


def blend(images: Tensor, weights: Tensor, *, partner: Tensor | None = None, inplace: bool = False) -> Tensor:
    """Blend every sample with its partner: ``out[i] = (1 - w[i]) * x[i] + w[i] * x[partner[i]]``.

    The MixUp apply step. Computed by :func:`torch.lerp` in float32 (float64 for float64 images)
    and written once into the output; half-precision results are rounded to their dtype, integer
    ones (uint8, ...) to the nearest integer, so a uint8 pixel is at most half a grey level from
    the exact blend. Keeps dtype, device and memory format.

    Args:
        images: the batch ``(B, ...)``, any real dtype but bool.
        weights: the partner's weight ``w`` of every sample, a float tensor ``(B,)`` in [0, 1]
            (checked on CPU tensors).
        partner: as in :func:`paste`; ``None`` means ``i - 1`` (cyclic).
        inplace: write into ``images`` (through one temporary copy of the partners) and return it.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
        >>> blend(x, torch.tensor([0.25, 0.5])).tolist()
        [[0.25, 0.75], [0.5, 1.5]]
    """
    if not isinstance(images, Tensor) or images.ndim < 1:
        raise ValueError(f"images must be a batched tensor (B, ...), but got {_describe(images)}.")
    if images.dtype == torch.bool or images.is_complex():
        raise TypeError(f"blend mixes real-valued pixels, but got dtype {images.dtype}: a mask cannot be blended.")
    batch = images.shape[0]
    weights = _check_weights(weights, batch, images.device)
    partner = _check_partner(partner, batch, images.device)
    if images.requires_grad and torch.is_grad_enabled():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        w = weights.to(images.dtype).reshape(batch, *([1] * (images.ndim - 1)))
        mixed = torch.lerp(images, source, w)
        return images.copy_(mixed) if inplace else mixed
    if torch.compiler.is_compiling():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        mixed = lerp_compiled(images, source, weights.reshape(batch, *([1] * (images.ndim - 1))))
        return images.copy_(mixed) if inplace else mixed
    out = images if inplace else torch.empty_like(images)
    blend_into(out, images, images, weights, partner)
    return out


def apply(
    images: Tensor,
    *,
    masks: Tensor | None = None,
    weights: Tensor | None = None,
    partner: Tensor | None = None,
    inplace: bool = False,
) -> Tensor:
    """Apply a mix's per-pixel weight of the partner: a mask, a per-sample blend weight, or both.

    With ``masks`` alone this is :func:`paste`, with ``weights`` alone :func:`blend`. With both,
    each sample is pasted where its mask is ``True`` and blended by its weight elsewhere; a switch
    between a mask mix and a blend per sample gives every sample either an empty mask or a zero
    weight. The pasted fraction plus the weight is then the sample's ``lam``.

    Example:
        >>> x = torch.arange(8.0).reshape(2, 1, 2, 2)
        >>> m = torch.tensor([[[True, False], [False, False]], [[False] * 2] * 2])
        >>> apply(x, masks=m, weights=torch.tensor([0.0, 0.5]))[:, 0].tolist()
        [[[4.0, 1.0], [2.0, 3.0]], [[2.0, 3.0], [4.0, 5.0]]]
    """
    if weights is None:
        if masks is None:
            raise ValueError("apply needs masks, weights or both, but got neither.")
        return paste(images, masks, partner=partner, inplace=inplace)
    if masks is None:
        return blend(images, weights, partner=partner, inplace=inplace)
    _check_masks(images, masks)
    if images.dtype == torch.bool or images.is_complex():
        raise TypeError(f"apply blends real-valued pixels, but got dtype {images.dtype}: a mask cannot be blended.")
    weights = _check_weights(weights, images.shape[0], images.device)
    partner = _check_partner(partner, images.shape[0], images.device)
    if (images.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        pasted = paste(images, masks, partner=partner)
        rolled = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        w = weights.reshape(-1, *([1] * (images.ndim - 1)))
        if torch.compiler.is_compiling():
            mixed = lerp_compiled(pasted, rolled, w)
        else:
            mixed = torch.lerp(pasted, rolled, w.to(images.dtype))
        return images.copy_(mixed) if inplace else mixed
    if not paste_blend_fits(images):  # a few large integer samples: pasted, then blended by columns
        pasted = paste(images, masks, partner=partner)
        blend_into(pasted, pasted, images, weights, partner)
        return images.copy_(pasted) if inplace else pasted
    out = images if inplace else torch.empty_like(images)
    source: Tensor | None = None
    if partner is not None or inplace:  # a copy of the partners (in place, they are overwritten)
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
    paste_blend_into(out, images, masks, weights, source)
    return out
