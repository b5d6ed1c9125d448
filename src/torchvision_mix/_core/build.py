"""Stage 2 of every mix: **build** the partner's per-pixel weight from the sampled parameters.

For the mask family (CutMix, Attentive CutMix, SaliencyMix, FMix, GridMix) the weight is a boolean
mask ``(B, H, W)``, ``True`` where sample ``i`` takes its partner's pixel. Deterministic, on any
device: only the few sampled numbers travel to it, never a mask.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import _check_bool, _check_int, _check_positive, _check_size, _describe, _is_int, _is_integer, _is_real
from ._kernels import BRACKET_MIN, block_samples, top_count_bracket

__all__ = [
    "boxes_to_masks",
    "cell_bounds",
    "centered_boxes",
    "fourier_noise",
    "grid_to_masks",
    "grids_to_masks",
    "saliency_peaks",
    "spectral_residual_saliency",
    "top_count_masks",
    "top_k_cells",
]


def boxes_to_masks(boxes: Tensor, height: int, width: int, *, device: torch.device | str | None = None) -> Tensor:
    """Turn boxes ``(B, 4)`` (``x1, y1, x2, y2``, half-open, in pixels) into masks ``(B, H, W)``.

    Coordinates outside the image are clipped; an empty box gives an all-``False`` mask.

    Args:
        boxes: integer tensor of shape ``(B, 4)``.
        height: mask height ``H``.
        width: mask width ``W``.
        device: where to build the masks; defaults to ``boxes.device``. Only the ``4 * B``
            coordinates travel, never a mask.

    Returns:
        A boolean tensor of shape ``(B, H, W)``.

    Example:
        >>> boxes_to_masks(torch.tensor([[1, 0, 3, 2]]), 3, 4).int()
        tensor([[[0, 1, 1, 0],
                 [0, 1, 1, 0],
                 [0, 0, 0, 0]]], dtype=torch.int32)
    """
    _check_size(height, width)
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        got = _describe(boxes)
        raise ValueError(f"boxes must be a tensor of shape (B, 4), but got {got}.")
    if not _is_integer(boxes):
        raise TypeError(f"boxes must hold integer pixel coordinates, but got dtype {boxes.dtype}.")
    device = boxes.device if device is None else torch.device(device)
    if boxes.device != device:
        boxes = boxes.to(device, non_blocking=True)
    x1, y1, x2, y2 = boxes.T.unsqueeze(-1).unbind(0)  # each (B, 1)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= y1) & (rows < y2)  # (B, H)
    in_cols = (cols >= x1) & (cols < x2)  # (B, W)
    if torch.compiler.is_compiling():
        # Inductor fuses the plain bool form; the byte views below break its vectorised CPU code.
        return in_rows.unsqueeze(2) & in_cols.unsqueeze(1)
    # 0/1 bytes (bool viewed as uint8): the outer product runs ~20x faster than bool `&` on the CPU.
    in_rows, in_cols = in_rows.view(torch.uint8), in_cols.view(torch.uint8)
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).view(torch.bool)


def cell_bounds(size: int, cells: int) -> Tensor:
    """Pixel boundaries of ``cells`` grid cells along an axis of ``size`` pixels.

    Cell ``k`` covers pixels ``ceil(k * size / cells)`` up to (excluded)
    ``ceil((k + 1) * size / cells)``: integer cells that tile the axis exactly, every pixel in
    exactly one cell, sizes differing by at most one pixel. Pixel ``r`` lies in cell
    ``floor(r * cells / size)``.

    Returns:
        An int64 tensor of shape ``(cells + 1,)`` from ``0`` to ``size``.

    Example:
        >>> cell_bounds(224, 7).tolist()
        [0, 32, 64, 96, 128, 160, 192, 224]
        >>> cell_bounds(61, 7).diff().tolist()
        [9, 9, 9, 8, 9, 9, 8]
    """
    _check_int("cells", cells)
    if not _is_int(size) or size < cells:
        raise ValueError(f"size must be an int >= cells ({cells}) so that no cell is empty, but got {size!r}.")
    k = torch.arange(cells + 1)
    return (k * size + cells - 1) // cells


def grid_to_masks(cells: Tensor, height: int, width: int) -> Tensor:
    """Upsample a boolean cell grid ``(B, gh, gw)`` to pixel masks ``(B, H, W)``, exactly.

    The ``gh x gw`` cells tile the image as :func:`cell_bounds` says, for every ``H`` and ``W``
    (sizes that ``gh``/``gw`` do not divide and non-square images included): no overlap, no gap,
    no pixel short. Requires ``gh <= H`` and ``gw <= W``.

    Example:
        >>> cells = torch.tensor([[[True, False], [False, False]]])
        >>> grid_to_masks(cells, 3, 5).int()
        tensor([[[1, 1, 1, 0, 0],
                 [1, 1, 1, 0, 0],
                 [0, 0, 0, 0, 0]]], dtype=torch.int32)
    """
    _check_size(height, width)
    if not isinstance(cells, Tensor) or cells.ndim != 3:
        got = _describe(cells)
        raise ValueError(f"cells must be a tensor of shape (B, gh, gw), but got {got}.")
    if cells.dtype != torch.bool:
        raise TypeError(f"cells must be a boolean tensor, but got dtype {cells.dtype}.")
    gh, gw = cells.shape[1:]
    if gh > height or gw > width:
        raise ValueError(
            f"The grid ({gh}x{gw}) is larger than the image ({height}x{width}): some cells would hold no pixel."
        )
    row_cell = torch.arange(height, device=cells.device) * gh // height
    # Built as uint8 bytes, faster than bool on the CPU; under torch.compile as bool, since the
    # byte views break inductor's vectorised CPU code.
    compiling = torch.compiler.is_compiling()
    rows = (cells if compiling else cells.view(torch.uint8)).index_select(1, row_cell)  # (B, H, gw), small
    batch = cells.shape[0]
    if width % gw == 0:
        # Equal cell widths: a broadcast copy, ~5x faster than gathering every pixel.
        out = rows[..., None].expand(batch, height, gw, width // gw).reshape(batch, height, width)
    else:
        col_cell = torch.arange(width, device=cells.device) * gw // width
        out = rows.index_select(2, col_cell)
    return out if compiling else out.view(torch.bool)


def top_k_cells(heatmaps: Tensor, k: int | Tensor) -> Tensor:
    """Select the ``k`` highest cells of every heatmap ``(B, gh, gw)``.

    Ties are broken deterministically: among equal values the cell with the lower flat
    (row-major) index wins. ``NaN`` cells rank last. Runs on the heatmaps' device without a host
    synchronisation.

    Args:
        heatmaps: real tensor of shape ``(B, gh, gw)``.
        k: number of cells per sample, an int or an integer tensor of shape ``(B,)`` (one per
            sample), each in ``[0, gh * gw]``.

    Returns:
        A boolean tensor of shape ``(B, gh, gw)`` with exactly ``k`` (or ``k[i]``) ``True`` cells
        per sample.

    Example:
        >>> heat = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])
        >>> top_k_cells(heat, 2).int()
        tensor([[[0, 1],
                 [0, 1]]], dtype=torch.int32)
    """
    if not isinstance(heatmaps, Tensor) or heatmaps.ndim != 3:
        got = _describe(heatmaps)
        raise ValueError(f"heatmaps must be a tensor of shape (B, gh, gw), but got {got}.")
    if not _is_real(heatmaps):
        raise TypeError(f"heatmaps must be real numbers, but got dtype {heatmaps.dtype}.")
    batch, gh, gw = heatmaps.shape
    n = gh * gw
    if isinstance(k, Tensor):
        if k.shape != (batch,) or not _is_integer(k):
            raise ValueError(
                f"k must be an int or an integer tensor of shape ({batch},), but got {k.dtype} {tuple(k.shape)}."
            )
        k = k.to(heatmaps.device, non_blocking=True)[:, None]
    elif not _is_int(k) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}] (the number of cells), but got {k!r}.")
    flat = heatmaps.reshape(batch, n)
    if flat.is_floating_point():
        flat = torch.nan_to_num(flat, nan=-math.inf)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=flat.device).expand(batch, n))
    return (ranks < k).reshape(batch, gh, gw)


# ---------------------------------------------------------------------------------------------
# SaliencyMix: a box centred on the donor's most salient pixel
# ---------------------------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the grey of OpenCV's cvtColor (RGB order)


_RESIZE_BLOCK = 1 << 20  # pixels made grey and resized per step (4 MiB in float32)


def spectral_residual_saliency(images: Tensor, *, width: int = 64, sigma: float = 8.0) -> Tensor:
    """Spectral-residual saliency maps (Hou & Zhang, CVPR 2007) of a batch, vectorised on its device.

    For every image: grey (BT.601 luma for 3 channels, else the channel mean), area-downscaled to
    ``width`` pixels wide (never upscaled; the height keeps the aspect ratio), 2-D FFT; the log
    amplitude (floored at ``2 ** -20`` of the map's largest amplitude, so that the exact zeros in
    the spectra of flat synthetic images stay finite) minus its 3x3 local mean (circular, as the
    spectrum is periodic) is the spectral residual; with the original phase it goes back through
    the inverse FFT, its squared magnitude is blurred by a Gaussian of standard deviation
    ``sigma * w / 64`` map pixels (σ = 8 at 64 pixels, as in the paper), truncated at 3σ and
    renormalised at the borders. Computed on the half plane of the real FFT with small matrix
    filters; ``tests/test_saliencymix.py`` checks it against the steps written out literally.

    Args:
        images: real tensor ``(B, C, H, W)``; computed in float32 (float64 stays float64). The
            result does not depend on the pixels' scale (up to rounding): integer images need no
            division by their maximum.
        width: the width of the map, >= 1 (64, as in the paper).
        sigma: the Gaussian's standard deviation at a 64-pixel map, > 0.

    Returns:
        Maps ``(B, h, w)`` on the images' device, ``w = min(width, W)``,
        ``h = max(1, round(H * w / W))``.

    Example:
        >>> images = torch.zeros(1, 3, 128, 128)
        >>> images[0, :, 20:30, 90:100] = 1.0  # one bright square on black
        >>> maps = spectral_residual_saliency(images)
        >>> maps.shape
        torch.Size([1, 64, 64])
        >>> saliency_peaks(maps, 128, 128).tolist()  # the peak (y, x): on the square
        [[21, 97]]
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor of shape (B, C, H, W), but got {_describe(images)}.")
    if not _is_real(images):
        raise TypeError(f"images must be real numbers, but got dtype {images.dtype}.")
    _check_int("width", width)
    sigma = _check_positive("sigma", sigma)
    height, full_width = images.shape[2:]
    if height * full_width == 0:
        raise ValueError(f"images must hold at least one pixel, but got shape {tuple(images.shape)}.")
    w = min(width, full_width)
    h = max(1, round(height * w / full_width))
    if images.shape[0] == 0:  # an FFT of nothing: some backends refuse it
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        return torch.empty(0, h, w, dtype=dtype, device=images.device)
    grey = _small_grey(images, h, w)
    # Everything below works on the half plane of the real FFT: |S| is symmetric (S(-k) = conj S(k)),
    # and so is its circular 3x3 mean, so exp(residual + i * phase) = S * exp(-mean3x3(log|S|)) (as
    # exp(log|S| - mean) * S / |S|) is Hermitian and its inverse transform real.
    half = w // 2 + 1
    spectrum = torch.fft.rfft2(grey)  # (B, h, half)
    amplitude = spectrum.abs()
    # The floor: flat synthetic images have exact zeros in their spectra, whose logs would overflow exp(-mean).
    floor = amplitude.amax(dim=(1, 2), keepdim=True).mul_(2.0**-20).clamp_min_(torch.finfo(grey.dtype).tiny)
    log_amplitude = torch.maximum(amplitude, floor).log_()
    # The full plane's log|S|: columns half .. w - 1 mirror columns w - half .. 1 at rows -k.
    mirrored = log_amplitude.index_select(1, _mirror_rows(h, grey.device))[..., 1 : w - half + 1].flip(-1)
    full = torch.cat([log_amplitude, mirrored], dim=-1)  # (B, h, w)
    # Separable filters as small matrices, one matmul per axis.
    minus_mean = _matrix("box3", h, 0.0, grey) @ (full @ _matrix("box3", w, 0.0, grey)[:half].T)
    saliency = torch.fft.irfft2(spectrum.mul_(minus_mean.neg_().exp_()), s=(h, w)).square_()
    s = sigma * w / 64
    return _matrix("gauss", h, s, grey) @ saliency @ _matrix("gauss", w, s, grey).T


def _small_grey(images: Tensor, h: int, w: int) -> Tensor:
    """Every image's grey (BT.601 luma of 3 channels, else the channel mean), area-resized to ``h x w``.

    Computed in float32 (float64 stays) a block of samples at a time in reused buffers: a
    conversion (integer and half batches), the grey, the resize. The batch is never held in
    float32 whole, and no block allocates (fresh memory per block cost more in page faults than
    the work). Returns ``(B, h, w)``.
    """
    batch, channels, height, width = images.shape
    compute = torch.float64 if images.dtype == torch.float64 else torch.float32
    out = torch.empty(batch, h, w, dtype=compute, device=images.device)
    step = batch
    if images.device.type == "cpu":
        step = block_samples(batch, channels * height * width, _RESIZE_BLOCK)
    wide = None if images.dtype == compute else torch.empty_like(images[:step], dtype=compute)
    grey = torch.empty(step, 1, height, width, dtype=compute, device=images.device)
    for i in range(0, batch, step):
        n = min(step, batch - i)
        x = images[i : i + n] if wide is None else wide[:n].copy_(images[i : i + n])
        g = grey[:n]
        if channels == 3:
            torch.mul(x[:, 0], _LUMA[0], out=g[:, 0]).add_(x[:, 1], alpha=_LUMA[1]).add_(x[:, 2], alpha=_LUMA[2])
        else:
            torch.mean(x, dim=1, keepdim=True, out=g)
        out[i : i + n] = g[:, 0] if (h, w) == (height, width) else F.interpolate(g, size=(h, w), mode="area")[:, 0]
    return out


def _matrix(kind: str, n: int, sigma: float, like: Tensor) -> Tensor:
    """A small constant matrix on ``like``'s dtype and device (built once on the CPU, then cached)."""
    return _cpu_matrix(kind, n, sigma, like.dtype).to(like.device, non_blocking=True)


@functools.lru_cache(maxsize=64)
def _cpu_matrix(kind: str, n: int, sigma: float, dtype: torch.dtype) -> Tensor:
    index = torch.arange(n, dtype=torch.float64)
    offset = index[:, None] - index[None, :]
    if kind == "box3":  # (n, n): the mean of each entry and its two neighbours, wrapping around
        matrix = torch.zeros(n, n, dtype=torch.float64)
        rows = torch.arange(n)
        for shift in (-1, 0, 1):
            matrix.index_put_((rows, (rows + shift) % n), torch.full((n,), 1 / 3, dtype=torch.float64), accumulate=True)
        return matrix.to(dtype)
    # "gauss" (n, n): a Gaussian truncated at 3 sigma and at the borders, each row renormalised to sum 1
    radius = max(1, math.ceil(3 * sigma))
    matrix = torch.exp(-0.5 * (offset / sigma) ** 2).masked_fill_(offset.abs() > radius, 0.0)
    return (matrix / matrix.sum(dim=1, keepdim=True)).to(dtype)


@functools.lru_cache(maxsize=64)
def _mirror_rows_cpu(n: int) -> Tensor:
    return (-torch.arange(n)) % n


def _mirror_rows(n: int, device: torch.device) -> Tensor:
    return _mirror_rows_cpu(n).to(device, non_blocking=True)


def saliency_peaks(maps: Tensor, height: int, width: int) -> Tensor:
    """The pixel ``(y, x)`` of every map's maximum, for images of ``height x width`` pixels.

    The maximum of a map ``(h, w)`` is its first in row-major order (``NaN`` ranks last); map
    cell ``(r, c)`` covers the image like a grid cell and is mapped to the pixel at its centre,
    ``y = (2r + 1) * H // (2h)``, ``x = (2c + 1) * W // (2w)`` (``(r, c)`` itself when the map
    has the image's size). Runs on the maps' device without a host synchronisation.

    Returns:
        An int64 tensor ``(B, 2)`` of ``(y, x)`` on the maps' device.

    Example:
        >>> maps = torch.zeros(2, 4, 4)
        >>> maps[0, 1, 2] = maps[1, 3, 0] = 1.0
        >>> saliency_peaks(maps, 100, 40).tolist()
        [[37, 25], [87, 5]]
    """
    _check_size(height, width)
    if not isinstance(maps, Tensor) or maps.ndim != 3 or 0 in maps.shape[1:]:
        raise ValueError(f"maps must be a tensor of shape (B, h, w) with h, w >= 1, but got {_describe(maps)}.")
    if not _is_real(maps):
        raise TypeError(f"maps must be real numbers, but got dtype {maps.dtype}.")
    h, w = maps.shape[1:]
    flat = maps.reshape(maps.shape[0], h * w)
    if flat.is_floating_point():
        flat = torch.nan_to_num(flat, nan=-math.inf)
    index = flat.argmax(dim=1)
    rows, cols = index // w, index % w
    return torch.stack([(2 * rows + 1) * height // (2 * h), (2 * cols + 1) * width // (2 * w)], dim=1)


def centered_boxes(centers: Tensor, sizes: Tensor, height: int, width: int) -> Tensor:
    """Boxes of the given sizes centred on the given pixels, clipped to the image, on the centres' device.

    As in :func:`sample_boxes`: a box of ``h x w`` pixels around ``(y, x)`` starts at
    ``(y - h // 2, x - w // 2)``; it is then clipped to the image.

    Args:
        centers: integer ``(B, 2)`` pixels ``(y, x)``, on any device (e.g. :func:`saliency_peaks`).
        sizes: integer ``(B, 2)`` box sides ``(h, w)`` (e.g. :func:`sample_box_sizes`); moved to
            the centres' device.
        height: image height ``H``.
        width: image width ``W``.

    Returns:
        An int64 tensor ``(B, 4)`` of ``x1, y1, x2, y2`` (half-open), for :func:`boxes_to_masks`.

    Example:
        >>> centered_boxes(torch.tensor([[0, 5]]), torch.tensor([[4, 4]]), 10, 10).tolist()
        [[3, 0, 7, 2]]
    """
    _check_size(height, width)
    for name, value in (("centers", centers), ("sizes", sizes)):
        if not isinstance(value, Tensor) or value.ndim != 2 or value.shape[1] != 2:
            raise ValueError(f"{name} must be a tensor of shape (B, 2), but got {_describe(value)}.")
        if not _is_integer(value):
            raise TypeError(f"{name} must hold integer pixels, but got dtype {value.dtype}.")
    if centers.shape[0] != sizes.shape[0]:
        raise ValueError(
            f"centers and sizes must have the same length, but got {centers.shape[0]} and {sizes.shape[0]}."
        )
    sizes = sizes.to(centers.device, torch.int64, non_blocking=True)
    start = centers.long() - sizes // 2
    end = start + sizes
    y1, x1 = start.unbind(1)
    y2, x2 = end.unbind(1)
    return torch.stack([x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], dim=1)


# ---------------------------------------------------------------------------------------------
# FMix: the highest pixels of low-frequency Fourier noise
# ---------------------------------------------------------------------------------------------


def fourier_noise(
    spectra: Tensor,
    height: int,
    width: int,
    *,
    decay_power: float = 3.0,
    device: torch.device | str | None = None,
    inplace: bool = False,
) -> Tensor:
    """FMix's low-frequency noise: random spectra scaled by ``1 / f ** decay_power``, back to pixels.

    ``f`` is the magnitude of each coefficient's frequency in cycles per pixel
    (``sqrt(fy ** 2 + fx ** 2)``, ``fy`` from :func:`torch.fft.fftfreq` and ``fx`` from
    :func:`torch.fft.rfftfreq`), with the FMix paper's floor ``max(f, 1 / max(H, W))`` so that the
    constant term stays finite. The scaled half-plane spectrum goes through the inverse real
    2-D FFT (unnormalised: a positive factor changes no ranking). Its zero and Nyquist columns are
    first made Hermitian-symmetric, which is what NumPy's ``irfftn`` (the FMix reference) computes
    from any input, so every FFT backend (pocketfft, MKL, cuFFT) gives the same noise.

    Args:
        spectra: complex tensor ``(B, H, W // 2 + 1)`` (:func:`sample_fourier_spectra`).
        height: noise height ``H``.
        width: noise width ``W``.
        decay_power: δ, finite and > 0; larger means smoother noise (the paper uses 3).
        device: where to compute; defaults to the spectra's. Only the spectra travel.
        inplace: the spectra may be scaled in place (a fresh draw nobody reads again saves a
            copy); never done to spectra that had to move to ``device``'s copy anyway.

    Returns:
        Real noise ``(B, H, W)``: float32 for complex64 spectra, float64 for complex128.

    Example:
        >>> from torchvision_mix.masks import sample_fourier_spectra
        >>> g = torch.Generator().manual_seed(0)
        >>> noise = fourier_noise(sample_fourier_spectra(2, 32, 48, generator=g), 32, 48)
        >>> noise.shape, noise.dtype
        (torch.Size([2, 32, 48]), torch.float32)
    """
    _check_size(height, width)
    half = width // 2 + 1
    if not isinstance(spectra, Tensor) or spectra.ndim != 3 or tuple(spectra.shape[1:]) != (height, half):
        raise ValueError(
            f"spectra must be a tensor of shape (B, {height}, {half}) = (B, H, W // 2 + 1), "
            f"but got {_describe(spectra)}."
        )
    if not spectra.is_complex():
        raise TypeError(f"spectra must be complex, but got dtype {spectra.dtype}.")
    decay_power = _check_positive("decay_power", decay_power)
    _check_bool("inplace", inplace)
    device = spectra.device if device is None else torch.device(device)
    moved = spectra.to(device, non_blocking=True)
    owned = inplace or moved is not spectra  # a moved copy is ours to scale
    spectra = moved
    real = torch.float64 if spectra.dtype == torch.complex128 else torch.float32
    if spectra.shape[0] == 0:  # an FFT of nothing: some backends refuse it
        return torch.empty(0, height, width, dtype=real, device=device)
    scale = _fourier_scale(height, width, decay_power, real).to(device, non_blocking=True)
    mirror = _mirror_rows(height, device)
    batch = spectra.shape[0]
    noise = torch.empty(batch, height, width, dtype=real, device=device)
    # On the CPU a block of samples at a time: the inverse FFT copies its input, and a copy of
    # the whole batch's spectra cost more in first-touch page faults than the transform.
    step = batch if device.type != "cpu" else block_samples(batch, height * half, _NOISE_BLOCK)
    for i in range(0, batch, step):
        block = spectra[i : i + step]
        scaled = block.mul_(scale) if owned else block * scale
        for column in {0, width // 2} if width % 2 == 0 else {0}:
            values = scaled[:, :, column]
            scaled[:, :, column] = (values + values.index_select(1, mirror).conj()) / 2
        torch.fft.irfft2(scaled, s=(height, width), norm="forward", out=noise[i : i + step])
    return noise


@functools.lru_cache(maxsize=32)
def _fourier_scale(height: int, width: int, decay_power: float, dtype: torch.dtype) -> Tensor:
    """``1 / max(f, 1 / max(H, W)) ** decay_power`` over the half plane ``(H, W // 2 + 1)`` (CPU, cached)."""
    fy = torch.fft.fftfreq(height, dtype=dtype)
    fx = torch.fft.rfftfreq(width, dtype=dtype)
    frequency = (fy[:, None].square() + fx[None, :].square()).sqrt_()
    return frequency.clamp_min_(1.0 / max(height, width)).pow_(-decay_power)


_NOISE_BLOCK = 1 << 17  # spectrum coefficients per inverse FFT on the CPU (1 MiB of complex64)


def top_count_masks(scores: Tensor, counts: int | Tensor) -> Tensor:
    """The ``counts[i]`` highest pixels of every map ``(B, H, W)``, exactly, as boolean masks.

    Ties are broken deterministically: among equal scores the pixel with the lower flat
    (row-major) index wins; ``NaN`` ranks last. Exactly ``counts[i]`` pixels are ``True`` in map
    ``i``. The result is that of a stable descending sort of each map, which is how it is computed
    off the CPU (no host synchronisation). On the CPU, where reading values costs nothing, a
    faster exact selection runs for floating-point maps of 1024 pixels or more: a histogram of
    one score in 16 of a map brackets the threshold, two comparisons count the scores above and
    inside the bracket, and only the few inside are ordered (a map whose bracket misses is
    retried with a wider one, then ordered whole).

    Args:
        scores: real tensor ``(B, H, W)`` (FMix's noise: :func:`fourier_noise`).
        counts: an int or an integer tensor ``(B,)``, each in ``[0, H * W]`` (checked when on the
            CPU).

    Returns:
        A boolean tensor ``(B, H, W)`` on the scores' device.

    Example:
        >>> scores = torch.tensor([[[0.5, 0.9, 0.5], [0.1, 0.5, 0.7]]])
        >>> top_count_masks(scores, 3).int()
        tensor([[[1, 1, 0],
                 [0, 0, 1]]], dtype=torch.int32)
    """
    if not isinstance(scores, Tensor) or scores.ndim != 3:
        raise ValueError(f"scores must be a tensor of shape (B, H, W), but got {_describe(scores)}.")
    if not _is_real(scores):
        raise TypeError(f"scores must be real numbers, but got dtype {scores.dtype}.")
    batch, height, width = scores.shape
    n = height * width
    if isinstance(counts, Tensor):
        if counts.shape != (batch,) or not _is_integer(counts):
            got = _describe(counts, dtype=True)
            raise ValueError(f"counts must be an int or an integer tensor of shape ({batch},), but got {got}.")
        if counts.device.type == "cpu" and counts.numel() > 0:
            low, high = (int(v) for v in torch.aminmax(counts))
            if low < 0 or high > n:
                raise ValueError(f"counts must be in [0, {n}] (H * W), but got values in [{low}, {high}].")
        counts = counts.to(scores.device, torch.int64, non_blocking=True)
    elif not _is_int(counts) or not 0 <= counts <= n:
        raise ValueError(f"counts must be an int in [0, {n}] (H * W), or a tensor of them, but got {counts!r}.")
    else:
        counts = torch.full((batch,), counts, dtype=torch.int64, device=scores.device)
    flat = scores.reshape(batch, n)
    if batch * n == 0:
        return torch.zeros(batch, height, width, dtype=torch.bool, device=scores.device)
    if flat.is_floating_point():
        if flat.device.type == "cpu" and n >= BRACKET_MIN:
            return top_count_bracket(flat.contiguous(), counts, width).view(batch, height, width)
        # Ascending order of the negated scores: the highest first, NaN last, ties by index.
        order = torch.sort(flat.neg(), dim=1, stable=True).indices
    else:
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=flat.device).expand(batch, n))
    return (ranks < counts[:, None]).view(batch, height, width)


# ---------------------------------------------------------------------------------------------
# GridMix: independent grid cells, grids of several sizes in one batch
# ---------------------------------------------------------------------------------------------


def grids_to_masks(
    sizes: Tensor, cells: Tensor, height: int, width: int, *, device: torch.device | str | None = None
) -> Tensor:
    """Pixel masks ``(B, H, W)`` of grids of several sizes: sample ``i`` uses ``cells[i, :g, :g]``, ``g = sizes[i]``.

    Each grid tiles the image exactly as :func:`grid_to_masks` does (cell ``k`` of ``g`` covers
    pixels ``ceil(k * H / g)`` up to ``ceil((k + 1) * H / g)``, and likewise for the width), in
    one vectorised pass whatever the sizes, without a host synchronisation.

    Args:
        sizes: integer tensor ``(B,)`` of grid sizes in ``[1, G]``, each at most ``H`` and ``W``
            (checked when on the CPU).
        cells: boolean ``(B, G, G)``, on any device (:func:`sample_grids`).
        height: image height ``H``.
        width: image width ``W``.
        device: where to build the masks; defaults to the cells' device.

    Example:
        >>> cells = torch.tensor([[[True, False], [False, True]], [[True, False], [False, False]]])
        >>> grids_to_masks(torch.tensor([2, 1]), cells, 2, 4).int()
        tensor([[[1, 1, 0, 0],
                 [0, 0, 1, 1]],
        <BLANKLINE>
                [[1, 1, 1, 1],
                 [1, 1, 1, 1]]], dtype=torch.int32)
    """
    _check_size(height, width)
    if not isinstance(cells, Tensor) or cells.ndim != 3 or cells.shape[1] != cells.shape[2]:
        raise ValueError(f"cells must be a tensor of shape (B, G, G), but got {_describe(cells)}.")
    if cells.dtype != torch.bool:
        raise TypeError(f"cells must be a boolean tensor, but got dtype {cells.dtype}.")
    batch, grid = cells.shape[:2]
    if not isinstance(sizes, Tensor) or sizes.shape != (batch,) or not _is_integer(sizes):
        got = _describe(sizes, dtype=True)
        raise ValueError(f"sizes must be an integer tensor of shape ({batch},), but got {got}.")
    if sizes.device.type == "cpu" and batch > 0:
        low, high = (int(v) for v in torch.aminmax(sizes))
        if low < 1 or high > min(grid, height, width):
            raise ValueError(
                f"sizes must be in [1, {min(grid, height, width)}] (the cells' side, at most H and W), "
                f"but got values in [{low}, {high}]."
            )
    device = cells.device if device is None else torch.device(device)
    cells = cells.to(device, non_blocking=True)
    sizes = sizes.to(device, torch.int64, non_blocking=True)[:, None]
    # Pixel r lies in cell floor(r * g / H): the tiling of cell_bounds. Each row of cells is first
    # widened to its W pixels (B, G, W), a small gather; every pixel row is then a copy of one of
    # those, selected whole: no (B, H, W) index is ever built, and no pixel is gathered alone.
    row_cell = torch.arange(height, device=device) * sizes // height  # (B, H)
    col_cell = torch.arange(width, device=device) * sizes // width  # (B, W)
    patterns = cells.view(torch.uint8).gather(2, col_cell[:, None, :].expand(batch, grid, width))  # (B, G, W)
    rows = (row_cell + torch.arange(0, batch * grid, grid, device=device)[:, None]).view(-1)  # rows of (B * G, W)
    return patterns.view(batch * grid, width).index_select(0, rows).view(batch, height, width).view(torch.bool)
