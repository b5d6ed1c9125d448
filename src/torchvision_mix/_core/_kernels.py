"""The CPU fast paths and unchecked inner steps the public stages share.

Byte-lane counting (:func:`count_true`), word selects (:func:`words_select`), box areas
(:func:`box_areas`), the region-only paste of one box (:func:`paste_box`), the blend kernels and
the lerp custom op (:func:`lerp_into`, :func:`lerp_op`, :func:`lerp_compiled`), the label mix on
checked arguments (:func:`mix_labels_unchecked`) and the bracketed top-count selection
(:func:`top_count_bracket`). Nothing here checks its arguments: the callers did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

LANE_BLOCK = 255  # int64 words summed per block: each of their 8 byte lanes stays <= 255


def count_true(flat: Tensor) -> Tensor:
    """Exact number of 1 bytes in each row of a (B, N) tensor of 0/1 bytes, as int64.

    On the CPU a plain sum first widens every byte to int64 (a copy 8x the mask's size). Here
    the bytes are read as int64 words and summed in blocks of 255 words, so every byte lane
    accumulates at most 255 and never carries into the next; the lanes are then added up.
    """
    batch, n = flat.shape
    main = n // (8 * LANE_BLOCK) * (8 * LANE_BLOCK)
    if flat.device.type != "cpu" or main == 0 or n % 8 != 0 or not flat.is_contiguous():
        return flat.sum(dim=1, dtype=torch.int64)
    words = flat.view(torch.int64)[:, : main // 8].reshape(batch, main // (8 * LANE_BLOCK), LANE_BLOCK)
    lanes = words.sum(dim=2)  # (B, K) int64: 8 independent byte counters each
    counts = lanes.view(torch.uint8).sum(dim=1, dtype=torch.int64)
    if main < n:
        counts += flat[:, main:].sum(dim=1, dtype=torch.int64)
    return counts


def words_select(masks: Tensor, images: Tensor, source: Tensor | None, out: Tensor) -> bool:
    """``out = where(masks, source, images)`` through 32-bit words; ``False`` (nothing done) if unsuited.

    On the CPU, ``torch.where`` runs element by element for 1- and 2-byte dtypes (uint8 at about
    a tenth of copy speed); selecting bits through 32-bit words, ``b ^ ((a ^ b) & mask)`` with a
    mask of 0x00/0xFF bytes, is exact for every dtype and runs at memory speed. Needs a contiguous
    batch whose rows are whole words. ``source`` ``None`` means sample ``i - 1`` (cyclic), read
    through shifted views; ``out`` may be ``images`` when ``source`` is a copy (it is overwritten).
    The byte masks are made a block of samples at a time in one reused buffer, so that they stay
    in cache and cost no allocation per block.
    """
    size = images.element_size()
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    if (
        images.device.type != "cpu"
        or size not in (1, 2)
        or not images.is_contiguous()
        or (width * size) % 4 != 0
        or images.data_ptr() % 4 != 0
        or images.numel() == 0
    ):
        return False
    inner = [1] * (images.ndim - 3)  # the channel (and frame) axes the mask is broadcast over
    x, o = images.view(torch.int32), out.view(torch.int32)
    s = None if source is None else source.view(torch.int32)
    step = block_samples(batch, images[0].numel() * size, SELECT_BUDGET)
    shared = masks.stride(0) == 0  # one mask expanded over the batch: its words are made once
    buffer = torch.empty(1 if shared else step, height, width, size, dtype=torch.uint8)
    mask_bytes = masks.view(torch.uint8)
    if shared:
        buffer.copy_(mask_bytes[:1, :, :, None].expand(1, height, width, size)).neg_()  # 1 → 0xFF
    for rows, partner in _blocks(batch, step, x, s):
        n = rows.stop - rows.start
        words = buffer[:1] if shared else buffer[:n]
        if not shared:
            words.copy_(mask_bytes[rows, :, :, None].expand(n, height, width, size)).neg_()
        _select_words(words.view(-1, *inner, height, width * size).view(torch.int32), partner, x[rows], o[rows])
    return True


def _blocks(batch: int, step: int, images: Tensor, source: Tensor | None) -> Iterator[tuple[slice, Tensor]]:
    """The rows of each block of ``step`` samples, with their partners: ``source``'s rows, or (``None``)
    the rows ``i - 1`` of ``images``, read through shifted views (the first block splits off sample 0,
    whose partner is sample ``B - 1``)."""
    for i in range(0, batch, step):
        n = min(step, batch - i)
        if source is not None:
            yield slice(i, i + n), source[i : i + n]
        elif i > 0:
            yield slice(i, i + n), images[i - 1 : i + n - 1]
        else:
            yield slice(0, 1), images[-1:]
            if n > 1:
                yield slice(1, n), images[: n - 1]


#: Bytes of a word select's batch handled per block, at least (a block holds whole samples).
SELECT_BUDGET = 1 << 20


def _select_words(mask: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
    """``out = where(mask, a, b)`` bitwise: ``b ^ ((a ^ b) & mask)``; with ``out`` being ``b``, ``a`` is overwritten."""
    if out.data_ptr() == b.data_ptr():
        b.bitwise_xor_(a.bitwise_xor_(b).bitwise_and_(mask))
        return
    torch.bitwise_xor(a, b, out=out)
    out.bitwise_and_(mask)
    out.bitwise_xor_(b)


def box_areas(boxes: Tensor, height: int, width: int) -> Tensor:
    """The pixels of each box ``(B, 4)`` inside an ``H x W`` image (int64): what ``boxes_to_masks`` sets."""
    x1, y1, x2, y2 = boxes.long().unbind(1)
    rows = (y2.clamp(0, height) - y1.clamp(0, height)).clamp_min_(0)
    cols = (x2.clamp(0, width) - x1.clamp(0, width)).clamp_min_(0)
    return rows * cols


def paste_box(images: Tensor, box: tuple[int, int, int, int], *, inplace: bool = False) -> Tensor:
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


def blend_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a blend of ``dtype`` pixels is computed in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def blend_into(out: Tensor, base: Tensor, images: Tensor, weights: Tensor, partner: Tensor | None) -> None:
    """``out[i] = lerp(base[i], images[partner[i]], w[i])``; ``out`` may be ``base`` or ``images``."""
    batch = images.shape[0]
    if batch == 0:
        return
    w = weights.reshape(batch, *([1] * (images.ndim - 1)))
    if partner is not None or out.data_ptr() == images.data_ptr():
        source = images.roll(1, 0) if partner is None else images.index_select(0, partner)
        lerp_into(base, source, w, out)
        return
    # Two views instead of a rolled copy: rows 1.. take from rows 0..B-2, row 0 from row B-1.
    lerp_into(base[1:], images[:-1], w[1:], out[1:])
    lerp_into(base[:1], images[-1:], w[:1], out[:1])


def paste_blend_fits(images: Tensor) -> bool:
    """Whether :func:`paste_blend_into` takes this batch: not integer or half samples each larger than a block."""
    return (
        blend_dtype(images.dtype) == images.dtype or images.shape[0] == 0 or images[0].numel() <= _blend_chunk(images)
    )


def paste_blend_into(out: Tensor, images: Tensor, masks: Tensor, weights: Tensor, source: Tensor | None) -> None:
    """``out[i] = where(masks[i], p_i, lerp(x_i, p_i, w_i))``, ``p_i`` = ``source[i]`` or, for ``None``, ``x[i - 1]``.

    A paste and a blend in one pass, a block of samples at a time (on the CPU; float32 and float64
    batches elsewhere in one block): each block is blended and then pasted while in cache. Integer
    and half batches are computed in float32 buffers of one block, reused by every block (integers
    rounded to the nearest). ``out`` may be ``images`` when ``source`` is a copy. ``weights`` is
    ``(B,)``. Only for batches that :func:`paste_blend_fits` (a block's buffers stay within the bound
    of :func:`lerp_into`).
    """
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    if batch == 0:
        return
    compute = blend_dtype(images.dtype)
    per_sample = images[0].numel()
    wide = images.dtype != compute
    m = masks.reshape(batch, *([1] * (images.ndim - 3)), height, width)
    w = weights.to(compute).reshape(batch, *([1] * (images.ndim - 1)))
    step = batch
    if wide or images.device.type == "cpu":
        step = block_samples(batch, per_sample, BLEND_BUDGET)
    buffers = _buffers(images[:step], compute) if wide else None
    for rows, partner in _blocks(batch, step, images, source):
        if buffers is None:
            mixed = out[rows]
            torch.lerp(images[rows], partner, w[rows], out=mixed)
            torch.where(m[rows], partner, mixed, out=mixed)
        else:
            n = rows.stop - rows.start
            _lerp_rounded(images[rows], partner, w[rows], out[rows], *(t[:n] for t in buffers), mask=m[rows])


#: Elements of an integer blend computed per step, at least (a step holds whole samples, or whole
#: columns of a sample larger than a step). Each step holds two float32 temporaries (8 bytes per
#: element), so a uint8 blend's extra memory is its output plus about a quarter of a batch.
BLEND_BUDGET = 1 << 16


#: The most blocks a blocked pass makes of a batch.
BLOCKS = 32


def _blend_chunk(t: Tensor) -> int:
    """Elements of ``t`` an integer blend computes per step: a ``BLOCKS``-th of it, at least ``BLEND_BUDGET``."""
    return max(t.numel() // BLOCKS, BLEND_BUDGET)


def block_samples(batch: int, per_sample: int, budget: int) -> int:
    """Samples in each block of a pass over a batch a block at a time, on the CPU.

    Enough for ``budget`` elements (bytes, ...) of ``per_sample`` each, so that each block's few
    operators are worth dispatching and its temporaries stay in cache, and at least a
    ``BLOCKS``-th of the batch, so that a call dispatches a bounded number of operators whatever
    the batch size.
    """
    return max(1, min(batch, max(-(-batch // BLOCKS), budget // max(per_sample, 1))))


def lerp_into(a: Tensor, b: Tensor, w: Tensor, out: Tensor) -> None:
    """``out = lerp(a, b, w)`` in the blend dtype, rounded to ``out``'s integer dtype; ``out`` may be ``a``.

    Floating-point batches are written by one ``lerp``. Integer ones (uint8, ...) are blended in
    float32 a block at a time (blocks of whole samples; of columns, in memory order, when a
    sample alone is larger than a block), so that the float32 temporaries never exceed about a
    quarter of a batch (the whole batch in float32 would be 8 batches of uint8 at once, 12 with the
    result), and each block's passes run in cache. The two float32 buffers are allocated once and
    reused by every block: a fresh allocation per block cost more in first-touch page faults than
    the blend itself.
    """
    compute = blend_dtype(a.dtype)
    if a.dtype == compute:
        torch.lerp(a, b, w.to(compute), out=out)
        return
    if out.numel() == 0:
        return
    w = w.to(compute)
    batch = out.shape[0]
    chunk = _blend_chunk(out)
    per_sample = out.numel() // batch
    if per_sample <= chunk:  # blocks of whole samples: contiguous in any memory format
        step = block_samples(batch, per_sample, BLEND_BUDGET)
        buffers = _buffers(a[:step], compute)
        for i in range(0, batch, step):
            n = min(step, batch - i)
            block = slice(i, i + n)
            _lerp_rounded(a[block], b[block], w[block], out[block], *(t[:n] for t in buffers))
        return
    rows = _rows_in_memory_order(out, a, b)  # a few large samples: blocks of columns
    if rows is None:  # an unusual layout: one step
        _lerp_rounded(a, b, w, out, *_buffers(a, compute))
        return
    out_rows, a_rows, b_rows = rows
    w_rows = w.reshape(batch, 1)
    columns = out_rows.shape[1]
    step = min(columns, max(1, chunk // batch))
    buffers = _buffers(a_rows[:, :step], compute)
    for start in range(0, columns, step):
        n = min(step, columns - start)
        cols = slice(start, start + n)
        _lerp_rounded(a_rows[:, cols], b_rows[:, cols], w_rows, out_rows[:, cols], *(t[:, :n] for t in buffers))


def _buffers(like: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Two uninitialised tensors shaped and laid out like ``like``, of ``dtype``."""
    return torch.empty_like(like, dtype=dtype), torch.empty_like(like, dtype=dtype)


def _lerp_rounded(
    a: Tensor, b: Tensor, w: Tensor, out: Tensor, a_wide: Tensor, b_wide: Tensor, *, mask: Tensor | None = None
) -> None:
    """``out = lerp(a, b, w)`` (``b`` where ``mask``) computed in the buffers ``a_wide``/``b_wide`` (the blend
    dtype), rounded if integer."""
    a_wide.copy_(a)
    b_wide.copy_(b)
    torch.lerp(a_wide, b_wide, w, out=a_wide)
    if mask is not None:
        torch.where(mask, b_wide, a_wide, out=a_wide)
    if not a.is_floating_point():
        a_wide.round_()
        info = torch.iinfo(a.dtype)
        if info.bits <= 16 and b_wide.dtype == torch.float32:
            # A lerp of two such values is within them to < 0.5, so the rounded result needs no clamp;
            # and float32 → int32 → uint8/int16 runs vectorised, about twice as fast as float32 → uint8.
            a_wide = b_wide.view(torch.int32).copy_(a_wide)
        else:
            a_wide.clamp_(info.min, info.max)
    out.copy_(a_wide)


def _rows_in_memory_order(out: Tensor, *others: Tensor) -> tuple[Tensor, ...] | None:
    """``out`` and ``others`` as ``(B, M)`` views in ``out``'s memory order, or ``None`` if one is not so laid out."""
    strides = out.stride()
    order = sorted(range(1, out.ndim), key=lambda d: -strides[d])
    views = []
    for t in (out, *others):
        p = t.permute(0, *order)
        if t.shape != out.shape or not p.is_contiguous():
            return None
        views.append(p.reshape(t.shape[0], -1))
    return tuple(views)


def lerp_new(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """:func:`torch.lerp` into a new tensor laid out like ``a`` (``w`` of ``a``'s dtype)."""
    return torch.lerp(a, b, w, out=torch.empty_like(a))


# Under torch.compile, lerp runs as an opaque operator, ATen's own kernel: inductor's CPU code
# computes it without the fused multiply-add of ATen's vectorised kernel, so a compiled blend
# would differ from the eager one in the last bit of float32 results.
lerp_op: Callable[[Tensor, Tensor, Tensor], Tensor] = lerp_new
if hasattr(torch.library, "custom_op"):  # torch >= 2.4
    lerp_op = torch.library.custom_op("torchvision_mix::lerp", mutates_args=())(lerp_new)

    @lerp_op.register_fake
    def _(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
        return torch.empty_like(a)


def lerp_compiled(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """:func:`_lerp` as a new tensor, for torch.compile: the same values, bit for bit."""
    compute = blend_dtype(a.dtype)
    if a.dtype == compute:
        return lerp_op(a, b, w.to(compute))
    mixed = lerp_op(a.to(compute), b.to(compute), w.to(compute))
    if not a.is_floating_point():
        info = torch.iinfo(a.dtype)
        mixed = mixed.round().clamp(info.min, info.max)
    return mixed.to(a.dtype)


def mix_labels_unchecked(
    labels: Tensor, lam: Tensor, *, num_classes: int | None, partner: Tensor | None, label_smoothing: float
) -> Tensor:
    """:func:`~torchvision_mix.masks.mix_labels` on arguments already checked."""
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
        return lerp_op(y, y_partner, w)  # ATen's kernel: the eager result, bit for bit
    return torch.lerp(y, y_partner, w)


BRACKET_STEP = 16  # the CPU selection bins one score in 16 of a map to bracket its threshold
BRACKET_MIN = 1024  # below this many scores per map a full sort is as fast (measured: ~500)
BRACKET_Z = (1.0, 4.0)  # half-widths of the bracket, in binomial standard deviations of the sample:
# the first try, and the retry of the maps it misses (a grid sample of smooth noise errs far less)


def top_count_bracket(flat: Tensor, counts: Tensor, width: int) -> Tensor:
    """:func:`top_count_masks` on the CPU for a float ``(B, N)``: bracket, count, order the few inside.

    A histogram of one score in 16 brackets each map's threshold; two comparisons count the
    scores above the bracket (all taken) and inside it, and only those inside are ordered exactly
    (descending, ties by the lower index, ``NaN`` last). A map whose bracket misses the threshold
    is retried with a wider one, then ordered whole, so the result never depends on the sample.
    """
    batch, n = flat.shape
    upper, lower = _brackets(flat, counts, width)  # (B, 2) each: the first try and the retry
    above = flat > upper[:, :1]  # all taken
    inside = flat >= lower[:, :1]  # the threshold lies among these
    n_above = count_true(above.view(torch.uint8))
    n_inside = count_true(inside.view(torch.uint8))
    missed = (n_above > counts) | (n_inside < counts)  # NaN is in neither
    whole = False  # whether a map is ordered whole: only then can a candidate be NaN
    if bool(missed.any()):  # these maps again, with the wider bracket, and whole if it misses too
        rows = missed.nonzero()[:, 0]
        part, wanted = flat.index_select(0, rows), counts.index_select(0, rows)
        part_above, part_inside = part > upper[rows, 1:], part >= lower[rows, 1:]
        part_n_above = count_true(part_above.view(torch.uint8))
        missed = (part_n_above > wanted) | (count_true(part_inside.view(torch.uint8)) < wanted)
        whole = bool(missed.any())
        part_above.masked_fill_(missed[:, None], False)
        part_inside.masked_fill_(missed[:, None], True)
        above.index_copy_(0, rows, part_above)
        inside.index_copy_(0, rows, part_inside)
        n_above.index_copy_(0, rows, part_n_above.masked_fill_(missed, 0))
    index = _candidates(inside, above)  # inside and not above, ascending flat indices
    rows = index // n
    values = flat.view(-1).index_select(0, index)
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()  # exact, and the same order
    if values.dtype == torch.float32:
        # One sort of int64 keys (map, value descending, NaN last); ties keep the ascending index (stable).
        bits = (values + 0.0).view(torch.int32)  # + 0.0: -0.0 ties with +0.0
        ordered = bits.bitwise_right_shift(31).bitwise_and_(0x7FFFFFFF).bitwise_xor_(bits)  # int order = float order
        keys = (rows * 2**33).sub_(ordered)  # in int64: the map, then descending scores in [-2**31, 2**31]
        if whole:
            keys = torch.where(values.isnan(), rows * 2**33 + 2**32, keys)  # NaN last
        order = torch.sort(keys, stable=True).indices
    else:
        order = torch.sort(values.neg(), stable=True).indices  # the highest first, NaN last
        order = order.index_select(0, torch.sort(rows.index_select(0, order), stable=True).indices)
    # Sorted or not, each map's candidates sit at the same positions (index is ascending, so
    # grouped by map): position p of the order belongs to map rows[p]; take its first `needed`.
    per_row = torch.bincount(rows, minlength=batch)
    end = per_row.cumsum(0) - per_row + (counts - n_above)
    take = torch.arange(index.numel()) < end.index_select(0, rows)
    # Candidates are not above: writing take at each of them sets exactly the ones taken.
    return above.view(-1).index_put_((index.index_select(0, order),), take).view(batch, n)


def _brackets(flat: Tensor, counts: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Per map, ``upper`` and ``lower`` scores ``(B, len(BRACKET_Z))`` likely around the count-th highest.

    From a histogram of a sample, one score in 16: every 4th column of every 4th row (a grid that
    reads a quarter of the rows), or every 16th score of a map too narrow for it. Any values are
    correct (the caller counts and retries); these only make the bracket narrow and rarely missed.
    """
    batch, n = flat.shape
    grid = flat.view(batch, n // width, width)[:, ::4, ::4] if width >= 16 else flat[:, ::BRACKET_STEP]
    binning = torch.float64 if flat.dtype == torch.float64 else torch.float32  # half is exact in float32
    sample = grid.reshape(batch, -1).to(binning)  # (B, m)
    m = sample.shape[1]
    bins = max(16, m // 2)  # about 2 sample scores a bin
    lo, hi = sample.amin(dim=1), sample.amax(dim=1)
    span = hi - lo
    bad = ~span.isfinite()  # NaN or an infinity in the sample, or an overflowing range: no bracket
    if bool(bad.any()):
        sample = sample.index_fill(0, bad.nonzero()[:, 0], 0)
        lo, span = lo.masked_fill(bad, 0), span.masked_fill(bad, 0)
    lo, step = lo.double(), span.double() / (bins - 4)
    scale = (1 / step).clamp_max_(2.0**100).to(binning)  # a constant map: every score in bin 0
    # In [0, bins - 4 + a few ulps]: x - lo <= span (rounding is monotonic), scale <= (bins - 4) / span.
    position = (sample - lo.to(binning)[:, None]).mul_(scale[:, None])
    offsets = torch.arange(0, batch * bins, bins, dtype=torch.int32)[:, None]  # one bincount for all maps
    binned = position.to(torch.int32).add_(offsets)
    hist = torch.bincount(binned.view(-1), minlength=batch * bins).view(batch, bins)
    below = hist.cumsum_(1)  # [i, j]: sample scores of map i in bins <= j
    # The count-th highest score sits near sample position count * m / n (descending); bracket it by
    # z binomial standard deviations (+2) on each side, widened to the edges of their bins.
    fraction = counts.double()[:, None] / n
    centre = (fraction * m).round_().long() - 1
    z = torch.tensor(BRACKET_Z, dtype=torch.float64)
    margin = (z * (m * fraction * (1 - fraction)).sqrt_()).ceil_().long() + 2  # (B, tries)
    upper_at, lower_at = centre - margin, centre + margin
    ranks = torch.cat([m - upper_at, m - lower_at], dim=1)  # ascending sample ranks + 1
    upper_bin, lower_bin = torch.searchsorted(below, ranks).chunk(2, dim=1)
    inf = torch.tensor(math.inf, dtype=flat.dtype)
    fine = ~bad[:, None]
    upper = torch.where((upper_at >= 0) & fine, (lo[:, None] + (upper_bin + 1) * step[:, None]).to(flat.dtype), inf)
    lower = torch.where((lower_at < m) & fine, (lo[:, None] + lower_bin * step[:, None]).to(flat.dtype), -inf)
    upper = torch.where((counts == n)[:, None], -inf, upper)  # all taken (but -inf and NaN)
    lower = torch.where((counts == 0)[:, None], inf, lower)  # none taken
    return upper, lower


def _candidates(inside: Tensor, above: Tensor) -> Tensor:
    """Flat indices, ascending, where ``inside`` and not ``above`` (``inside`` is overwritten).

    Few scores are candidates, and they cluster: the xor is taken in int64 words, only the words
    that are not zero are opened, which is faster than ``nonzero`` over every byte.
    """
    total = inside.numel()
    if total % 8 != 0:
        return inside.logical_xor_(above).view(-1).nonzero()[:, 0]
    words = inside.view(-1).view(torch.int64).bitwise_xor_(above.view(-1).view(torch.int64))
    hit = (words != 0).nonzero()[:, 0]
    set_bytes = words.index_select(0, hit).view(torch.bool)  # each byte 0 or 1
    return (hit[:, None] * 8 + torch.arange(8)).view(-1)[set_bytes]
