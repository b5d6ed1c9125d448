"""Stage 1 of every mix: **sample** its random parameters.

The only stage that draws random numbers. Everything is drawn on the CPU, from an optional
:class:`torch.Generator`: a few numbers per sample, so that a device never waits on them and a
seeded generator reproduces a run on any device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import (
    _check_fits,
    _check_generator,
    _check_grid_range,
    _check_int,
    _check_positive,
    _check_probability,
    _check_size,
    _check_size_pair,
)

__all__ = [
    "sample_beta",
    "sample_box_sizes",
    "sample_boxes",
    "sample_counts",
    "sample_fourier_spectra",
    "sample_grids",
]


_CANDIDATES = 4  # Marsaglia-Tsang candidates drawn per sample and round
_TINY = torch.finfo(torch.float64).tiny


def _log_standard_gamma(n: int, shape: float, generator: torch.Generator | None) -> Tensor:
    """Log of ``n`` Gamma(shape, 1) draws (float64, CPU), by Marsaglia and Tsang's method.

    Works in log space so that tiny shapes (α → 0) do not underflow to 0. Each sample gets a
    block of candidates at once (each accepted with probability > 0.95), so one round almost
    always suffices; samples whose whole block was rejected get another round.
    """
    boost = shape < 1.0
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    log_value = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while todo.numel() > 0:
        m = todo.numel()
        x = torch.randn(_CANDIDATES, m, dtype=torch.float64, generator=generator)
        u = torch.rand(_CANDIDATES, m, dtype=torch.float64, generator=generator)
        v = (1.0 + c * x) ** 3
        log_v = v.clamp_min(_TINY).log_()
        accept = (v > 0) & (u.log_() < x.square_().mul_(0.5).add_(d).sub_(v.mul_(d)).add_(log_v * d))
        first = accept.byte().argmax(dim=0, keepdim=True)  # the first accepted candidate
        done = accept.any(dim=0)
        chosen = log_v.gather(0, first)[0] + math.log(d)
        if bool(done.all()):
            log_value[todo] = chosen
            break
        log_value[todo[done]] = chosen[done]
        todo = todo[~done]
    if boost:
        log_value += torch.rand(n, dtype=torch.float64, generator=generator).log_() / shape
    return log_value


@torch.compiler.disable  # the draws run eagerly from the CPU generator, compiled or not
def sample_beta(
    n: int, *, alpha: float = 1.0, beta: float | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``n`` samples of Beta(``alpha``, ``beta``) (``beta`` defaults to ``alpha``).

    Unlike :class:`torch.distributions.Beta`, this takes a ``generator``, so a mix is
    reproducible without touching torch's global random state.

    Args:
        n: number of samples.
        alpha: first concentration, > 0.
        beta: second concentration, > 0; ``None`` means ``alpha`` (the symmetric Beta of CutMix).
        generator: a CPU :class:`torch.Generator`, or ``None`` for torch's global CPU generator.

    Returns:
        A float64 CPU tensor of shape ``(n,)`` with values in [0, 1].

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_beta(3, alpha=0.5, generator=g).shape
        torch.Size([3])
    """
    alpha = _check_positive("alpha", alpha)
    beta = alpha if beta is None else _check_positive("beta", beta)
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, but got {n!r}.")
    _check_generator(generator)
    if alpha == 1.0 and beta == 1.0:  # Beta(1, 1) is the uniform law: one draw
        return torch.rand(n, dtype=torch.float64, generator=generator)
    if alpha == beta:
        log_ab = _log_standard_gamma(2 * n, float(alpha), generator)
        log_a, log_b = log_ab[:n], log_ab[n:]
    else:
        log_a = _log_standard_gamma(n, float(alpha), generator)
        log_b = _log_standard_gamma(n, float(beta), generator)
    # a / (a + b) computed as a sigmoid of the log ratio: exact for tiny and huge values alike.
    return torch.sigmoid(log_a - log_b)


@torch.compiler.disable  # the draws run eagerly from the CPU generator, compiled or not
def sample_boxes(
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    center: str = "uniform",
    center_std: float = 0.25,
    size: int | tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample CutMix boxes, one for the whole batch or one per sample.

    For each box, the target pasted area ``t ~ Beta(alpha, alpha)``; the box is
    ``floor(sqrt(t) * W)`` by ``floor(sqrt(t) * H)`` pixels, centred on a pixel drawn uniformly
    over the image, then clipped to the image. (CutMix's paper draws λ ~ Beta(α, α) and uses
    side ratio ``sqrt(1 - λ)``; as Beta(α, α) is symmetric, ``t = 1 - λ`` has the same law.)
    Clipping shrinks boxes near the borders, which is why the exact pasted fraction must be
    measured from the mask (:func:`mask_fractions`), not taken from ``t``.

    Args:
        batch_size: number of boxes to return (rows).
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        alpha: Beta concentration, > 0.
        per_sample: draw an independent box for every sample; otherwise every row is the same box.
        center: ``"uniform"`` (the paper's CutMix: every pixel equally likely) or ``"gaussian"``
            (the paper's "center Gaussian CutMix" ablation): the centre is drawn from a normal law
            around the image centre with standard deviation ``center_std`` times the side, rounded
            and clipped to the image.
        center_std: the spread of the Gaussian centre, as a fraction of the height and width, > 0.
        size: a fixed box ``(h, w)`` in pixels instead of a drawn area (the paper's "fixed-size
            CutMix", 16×16 on 32×32 images); ``alpha`` is then not used. At most the image size.
        generator: a CPU :class:`torch.Generator`, or ``None`` for torch's global CPU generator.

    Returns:
        An int64 CPU tensor of shape ``(batch_size, 4)``: ``x1, y1, x2, y2`` with
        ``0 <= x1 <= x2 <= W`` and ``0 <= y1 <= y2 <= H`` (half-open: columns ``x1 .. x2 - 1``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_boxes(2, 224, 224, generator=g).tolist()
        [[0, 18, 131, 224], [0, 18, 131, 224]]
    """
    _check_size(height, width)
    _check_int("batch_size", batch_size, 0)
    if center not in ("uniform", "gaussian"):
        raise ValueError(f"center must be 'uniform' or 'gaussian', but got {center!r}.")
    center_std = _check_positive("center_std", center_std)
    if size is not None:
        box_size = _check_size_pair("size", size)
        _check_fits("box", box_size, height, width)
    n = batch_size if per_sample else min(batch_size, 1)
    if size is None:
        side = sample_beta(n, alpha=alpha, generator=generator).sqrt_()
        box_w = side.mul(width).floor_().long()
        box_h = side.mul_(height).floor_().long()
    else:
        box_h, box_w = (torch.full((n,), int(v), dtype=torch.int64) for v in box_size)
    if center == "uniform":
        cx = torch.randint(width, (n,), generator=generator)
        cy = torch.randint(height, (n,), generator=generator)
    else:
        normal = torch.randn(2, n, dtype=torch.float64, generator=generator)
        cx = normal[0].mul_(center_std * width).add_((width - 1) / 2).round_().clamp_(0, width - 1).long()
        cy = normal[1].mul_(center_std * height).add_((height - 1) / 2).round_().clamp_(0, height - 1).long()
    x1 = cx.sub_(box_w // 2)  # centre - half the side
    y1 = cy.sub_(box_h // 2)
    x2, y2 = x1 + box_w, y1 + box_h
    boxes = torch.stack([x1.clamp_(0, width), y1.clamp_(0, height), x2.clamp_(0, width), y2.clamp_(0, height)], 1)
    if not per_sample:
        boxes = boxes.expand(batch_size, 4).contiguous()
    return boxes


def sample_box_sizes(
    batch_size: int,
    height: int,
    width: int,
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample CutMix box sides without a position: one size for the batch or one per sample.

    The law of :func:`sample_boxes`: a target area ``t ~ Beta(alpha, alpha)`` and a box of
    ``floor(sqrt(t) * H)`` by ``floor(sqrt(t) * W)`` pixels. For mixes that place the box
    themselves (SaliencyMix centres it on the donor's most salient pixel).

    Returns:
        An int64 CPU tensor of shape ``(batch_size, 2)``: the box height and width of every row
        (every row the same without ``per_sample``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_box_sizes(2, 224, 224, per_sample=True, generator=g).tolist()
        [[220, 220], [188, 188]]
    """
    _check_size(height, width)
    _check_int("batch_size", batch_size, 0)
    n = batch_size if per_sample else min(batch_size, 1)
    side = sample_beta(n, alpha=alpha, generator=generator).sqrt_()
    sizes = torch.stack([side.mul(height).floor_().long(), side.mul_(width).floor_().long()], 1)
    return sizes if per_sample else sizes.expand(batch_size, 2).contiguous()


def sample_counts(
    batch_size: int,
    total: int,
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample how many of ``total`` pixels to paste: ``round(t * total)``, ``t ~ Beta(alpha, alpha)``.

    FMix's law for the pasted count (``total = H * W``). Rounded half to even, so the count lies
    in ``[0, total]`` and its mean is ``total / 2`` for every ``alpha``.

    Returns:
        An int64 CPU tensor of shape ``(batch_size,)`` (every entry the same without
        ``per_sample``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_counts(3, 100, per_sample=True, generator=g).tolist()
        [97, 71, 46]
    """
    _check_int("batch_size", batch_size, 0)
    _check_int("total", total, 0)
    n = batch_size if per_sample else min(batch_size, 1)
    counts = sample_beta(n, alpha=alpha, generator=generator).mul_(total).round_().long()
    return counts if per_sample else counts.expand(batch_size).contiguous()


def sample_fourier_spectra(
    batch_size: int, height: int, width: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """Draw FMix's random spectra: complex Gaussian coefficients of the ``H x W`` real-FFT half-plane.

    Real and imaginary parts are independent standard normals, drawn as one float32 tensor
    ``(batch_size, H, W // 2 + 1, 2)`` (real part first) from ``generator``;
    :func:`~torchvision_mix.masks.fourier_noise` scales them by ``1 / f ** decay_power`` and
    transforms them back to pixels, on any device.

    Returns:
        A complex64 CPU tensor of shape ``(batch_size, H, W // 2 + 1)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_fourier_spectra(2, 32, 48, generator=g).shape
        torch.Size([2, 32, 25])
    """
    _check_size(height, width)
    _check_int("batch_size", batch_size, 0)
    _check_generator(generator)
    parts = torch.randn(batch_size, height, width // 2 + 1, 2, generator=generator)
    return torch.view_as_complex(parts)


def sample_grids(
    batch_size: int,
    *,
    grid_size: int | tuple[int, int] = (2, 7),
    alpha: float = 1.0,
    cell_p: float | None = None,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample GridMix grids: a grid size ``g`` and a ``g x g`` pattern of cells taken from the partner.

    For each grid (one for the batch, or one per sample): ``g`` uniform over the inclusive range
    ``grid_size``, then every cell is taken independently with probability ``t``:
    ``t ~ Beta(alpha, alpha)``, or the fixed ``cell_p``. Drawn in this order: sizes, ``t`` (when
    ``cell_p`` is ``None``), then one uniform number per cell of a ``high x high`` array
    (a cell is taken when its number is below ``t``; a grid of size ``g`` uses the top-left
    ``g x g`` cells).

    Returns:
        ``(sizes, cells)``: int64 ``(batch_size,)`` and boolean ``(batch_size, high, high)`` CPU
        tensors, ``False`` outside each row's ``g x g`` corner. Without ``per_sample`` every row is
        the same grid.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sizes, cells = sample_grids(2, grid_size=(2, 3), per_sample=True, generator=g)
        >>> sizes.tolist(), cells.shape
        ([2, 3], torch.Size([2, 3, 3]))
    """
    low, high = _check_grid_range(grid_size)
    _check_int("batch_size", batch_size, 0)
    _check_probability("cell_p", cell_p, optional=True)
    _check_generator(generator)
    n = batch_size if per_sample else min(batch_size, 1)
    sizes = torch.randint(low, high + 1, (n,), generator=generator)
    if cell_p is None:
        t = sample_beta(n, alpha=alpha, generator=generator)
    else:
        t = torch.full((n,), float(cell_p), dtype=torch.float64)
    u = torch.rand(n, high, high, dtype=torch.float64, generator=generator)
    index = torch.arange(high)
    inside = (index < sizes[:, None])[:, :, None] & (index < sizes[:, None])[:, None, :]
    cells = (u < t[:, None, None]) & inside
    if not per_sample:
        sizes = sizes.expand(batch_size).contiguous()
        cells = cells.expand(batch_size, high, high).contiguous()
    return sizes, cells
