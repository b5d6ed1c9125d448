"""Stage 3 of every mix: **apply** the weight to the pixels and measure it.

A mix is a per-pixel weight of the partner: a boolean mask for the CutMix family, a per-sample
constant for MixUp, or both in one batch (disjoint samples, as a per-sample switch between the
two makes). :func:`paste` moves the partner's pixels where a mask is ``True``; :func:`blend`
mixes every pixel by a per-sample weight; :func:`apply` does either or both in one step.
``lam``, the mean weight of the partner in each sample, is :func:`mask_fractions` (an exact
count) for masks and the weight itself for blends; :mod:`.labels` mixes the labels by it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import _check_partner, _describe

__all__ = ["apply", "blend", "mask_fractions", "paste"]


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
    counts = _count_true(masks.reshape(masks.shape[0], pixels).view(torch.uint8))
    lam = counts.to(torch.float64).div_(pixels)
    return lam if dtype == torch.float64 else lam.to(dtype)


_LANE_BLOCK = 255  # int64 words summed per block: each of their 8 byte lanes stays <= 255


def _count_true(flat: Tensor) -> Tensor:
    """Exact number of 1 bytes in each row of a (B, N) tensor of 0/1 bytes, as int64.

    On the CPU a plain sum first widens every byte to int64 (a copy 8x the mask's size). Here
    the bytes are read as int64 words and summed in blocks of 255 words, so every byte lane
    accumulates at most 255 and never carries into the next; the lanes are then added up.
    """
    batch, n = flat.shape
    main = n // (8 * _LANE_BLOCK) * (8 * _LANE_BLOCK)
    if flat.device.type != "cpu" or main == 0 or n % 8 != 0 or not flat.is_contiguous():
        return flat.sum(dim=1, dtype=torch.int64)
    words = flat.view(torch.int64)[:, : main // 8].reshape(batch, main // (8 * _LANE_BLOCK), _LANE_BLOCK)
    lanes = words.sum(dim=2)  # (B, K) int64: 8 independent byte counters each
    counts = lanes.view(torch.uint8).sum(dim=1, dtype=torch.int64)
    if main < n:
        counts += flat[:, main:].sum(dim=1, dtype=torch.int64)
    return counts


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
    if not isinstance(images, Tensor) or images.ndim < 3:
        got = _describe(images)
        raise ValueError(f"images must be a tensor of shape (B, ..., H, W), but got {got}.")
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool or masks.shape != (batch, height, width):
        got = _describe(masks, dtype=True)
        raise ValueError(f"masks must be a boolean tensor of shape {(batch, height, width)}, but got {got}.")
    if masks.device != images.device:
        raise ValueError(f"masks are on {masks.device} but images on {images.device}.")
    partner = _check_partner(partner, batch, images.device)
    m = masks.reshape(batch, *([1] * (images.ndim - 3)), height, width)
    if (images.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        # Autograd cannot track out= writes, and inductor fuses the plain form into one kernel:
        # the plain (differentiable) form.
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        mixed = torch.where(m, source, images)
        return images.copy_(mixed) if inplace else mixed
    # The output is allocated before any temporary: on the CPU that order measured ~20% faster.
    out = images if inplace else torch.empty_like(images)
    packed = _packed_masks(masks, images)
    if partner is not None or inplace:
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        if packed is None:
            return torch.where(m, source, images, out=out)
        if inplace:  # images ^= (source ^ images) & mask
            words = images.view(torch.int32)
            words.bitwise_xor_(source.view(torch.int32).bitwise_xor_(words).bitwise_and_(packed))
            return images
        _select_words(packed, source.view(torch.int32), images.view(torch.int32), out.view(torch.int32))
        return out
    if batch > 0:
        # Two views instead of a rolled copy: rows 1.. take from rows 0..B-2, row 0 from row B-1.
        if packed is None:
            torch.where(m[1:], images[:-1], images[1:], out=out[1:])
            torch.where(m[:1], images[-1:], images[:1], out=out[:1])
        else:
            x, o = images.view(torch.int32), out.view(torch.int32)
            _select_words(packed[1:], x[:-1], x[1:], o[1:])
            _select_words(packed[:1], x[-1:], x[:1], o[:1])
    return out


def _packed_masks(masks: Tensor, images: Tensor) -> Tensor | None:
    """The mask as int32 words of 0x00/0xFF bytes over the images' bytes, or ``None`` if unsuited.

    On the CPU, ``torch.where`` runs element by element for 1- and 2-byte dtypes (uint8 at about
    a tenth of copy speed); selecting bits through 32-bit words with ``xor``/``and`` is exact for
    every dtype and runs at memory speed. Needs a contiguous batch whose rows are whole words.
    """
    size = images.element_size()
    width = images.shape[-1]
    if (
        images.device.type != "cpu"
        or size not in (1, 2)
        or not images.is_contiguous()
        or (width * size) % 4 != 0
        or images.data_ptr() % 4 != 0
        or images.numel() == 0
    ):
        return None
    batch, height = masks.shape[0], masks.shape[1]
    byte_mask = masks.view(torch.uint8).neg()  # True → 0xFF, False → 0x00
    if size > 1:
        byte_mask = byte_mask[..., None].expand(batch, height, width, size).reshape(batch, height, width * size)
    words = byte_mask.contiguous().view(torch.int32)
    return words.reshape(batch, *([1] * (images.ndim - 3)), height, width * size // 4)


def _select_words(mask: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
    """``out = where(mask, a, b)`` bitwise: ``b ^ ((a ^ b) & mask)``."""
    torch.bitwise_xor(a, b, out=out)
    out.bitwise_and_(mask)
    out.bitwise_xor_(b)


def _paste_box(images: Tensor, box: tuple[int, int, int, int], *, inplace: bool = False) -> Tensor:
    """Paste one box shared by the whole batch, with the default pairing (``i`` takes from ``i - 1``).

    Same result as ``paste(images, boxes_to_masks(box repeated), inplace=inplace)``, but only the
    pasted region is moved: in place its copy is the only allocation; otherwise the batch is
    copied once and the region written over it.
    """
    x1, y1, x2, y2 = box
    if inplace:
        region = images[..., y1:y2, x1:x2]
        region.copy_(region.roll(1, 0))
        return images
    out = images.clone()
    if images.shape[0] > 0:
        source = images[..., y1:y2, x1:x2]
        target = out[..., y1:y2, x1:x2]
        target[1:].copy_(source[:-1])
        target[:1].copy_(source[-1:])
    return out


def _check_weights(weights: Tensor, batch: int, device: torch.device) -> Tensor:
    if not isinstance(weights, Tensor) or weights.shape != (batch,) or not weights.is_floating_point():
        got = _describe(weights, dtype=True)
        raise ValueError(f"weights must be a float tensor of shape ({batch},), but got {got}.")
    if weights.device.type == "cpu" and weights.numel() > 0 and not torch.compiler.is_compiling():
        low, high = (float(v) for v in torch.aminmax(weights))
        if not 0.0 <= low <= high <= 1.0:  # NaN fails too
            raise ValueError(f"weights must be in [0, 1], but got values in [{low}, {high}].")
    return weights.to(device, non_blocking=True)


def blend_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a blend of ``dtype`` pixels is computed in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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
        mixed = _lerp_compiled(images, source, weights.reshape(batch, *([1] * (images.ndim - 1))))
        return images.copy_(mixed) if inplace else mixed
    out = images if inplace else torch.empty_like(images)
    _blend_into(out, images, images, weights, partner)
    return out


def _blend_into(out: Tensor, base: Tensor, images: Tensor, weights: Tensor, partner: Tensor | None) -> None:
    """``out[i] = lerp(base[i], images[partner[i]], w[i])``; ``out`` may be ``base`` or ``images``."""
    batch = images.shape[0]
    if batch == 0:
        return
    w = weights.reshape(batch, *([1] * (images.ndim - 1)))
    if partner is not None or out.data_ptr() == images.data_ptr():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        _lerp(base, source, w, out)
        return
    # Two views instead of a rolled copy: rows 1.. take from rows 0..B-2, row 0 from row B-1.
    _lerp(base[1:], images[:-1], w[1:], out[1:])
    _lerp(base[:1], images[-1:], w[:1], out[:1])


def _lerp(a: Tensor, b: Tensor, w: Tensor, out: Tensor) -> None:
    compute = blend_dtype(a.dtype)
    if a.dtype == compute:
        torch.lerp(a, b, w.to(compute), out=out)
        return
    mixed = torch.lerp(a.to(compute), b.to(compute), w.to(compute))
    if not a.is_floating_point():
        info = torch.iinfo(a.dtype)
        mixed = mixed.round_().clamp_(info.min, info.max)
    out.copy_(mixed)


def _lerp_new(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """:func:`torch.lerp` into a new tensor laid out like ``a`` (``w`` of ``a``'s dtype)."""
    return torch.lerp(a, b, w, out=torch.empty_like(a))


# Under torch.compile, lerp runs as an opaque operator, ATen's own kernel: inductor's CPU code
# computes it without the fused multiply-add of ATen's vectorised kernel, so a compiled blend
# would differ from the eager one in the last bit of float32 results.
_lerp_op: Callable[[Tensor, Tensor, Tensor], Tensor] = _lerp_new
if hasattr(torch.library, "custom_op"):  # torch >= 2.4
    _lerp_op = torch.library.custom_op("torchvision_mix::lerp", mutates_args=())(_lerp_new)

    @_lerp_op.register_fake
    def _(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
        return torch.empty_like(a)


def _lerp_compiled(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """:func:`_lerp` as a new tensor, for torch.compile: the same values, bit for bit."""
    compute = blend_dtype(a.dtype)
    if a.dtype == compute:
        return _lerp_op(a, b, w.to(compute))
    mixed = _lerp_op(a.to(compute), b.to(compute), w.to(compute))
    if not a.is_floating_point():
        info = torch.iinfo(a.dtype)
        mixed = mixed.round().clamp(info.min, info.max)
    return mixed.to(a.dtype)


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
    pasted = paste(images, masks, partner=partner)
    weights = _check_weights(weights, images.shape[0], images.device)
    partner = _check_partner(partner, images.shape[0], images.device)
    if images.requires_grad and torch.is_grad_enabled():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        w = weights.to(images.dtype).reshape(-1, *([1] * (images.ndim - 1)))
        mixed = torch.lerp(pasted, source, w)
        return images.copy_(mixed) if inplace else mixed
    if torch.compiler.is_compiling():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        mixed = _lerp_compiled(pasted, source, weights.reshape(-1, *([1] * (images.ndim - 1))))
        return images.copy_(mixed) if inplace else mixed
    _blend_into(pasted, pasted, images, weights, partner)
    return images.copy_(pasted) if inplace else pasted
