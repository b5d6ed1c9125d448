"""Hypothesis strategies for property-testing mixing transforms.

Needs the ``test`` extra (``pip install "torchvision-mix[test]"``), which installs Hypothesis.
Tensors are built from a drawn integer seed through a :class:`torch.Generator`, so examples
shrink and replay without touching torch's global random state.

Example:
    >>> from hypothesis import given
    >>> from torchvision_mix.testing import strategies as mst
    >>> @given(mst.mix_inputs(max_batch_size=4, max_side=16))
    ... def test_shapes(inputs):
    ...     images, labels, num_classes = inputs
    ...     assert images.shape[0] == labels.shape[0]
    >>> test_shapes()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import Tensor
from torchvision import tv_tensors

__all__ = [
    "IMAGE_DTYPES",
    "KINDS",
    "generators",
    "image_batches",
    "labels",
    "mix_inputs",
    "seeds",
]

#: The dtypes torchvision images come in.
IMAGE_DTYPES: tuple[torch.dtype, ...] = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Batch containers: ``tv_tensors.Image`` (B, C, H, W), ``tv_tensors.Video`` (B, T, C, H, W), plain (B, C, H, W).
KINDS: tuple[str, ...] = ("image", "video", "tensor")


def _check_range(name: str, low: int, high: int, floor: int) -> None:
    if not isinstance(low, int) or not isinstance(high, int):
        raise InvalidArgument(f"min_{name} and max_{name} must be ints, but got {low!r} and {high!r}.")
    if low < floor:
        raise InvalidArgument(f"min_{name}={low} must be >= {floor}.")
    if high < low:
        raise InvalidArgument(f"max_{name}={high} must be >= min_{name}={low}; use equal values for a fixed size.")


def seeds() -> st.SearchStrategy[int]:
    """Seeds for :class:`torch.Generator` (integers in ``[0, 2**32)``)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def generators() -> st.SearchStrategy[torch.Generator]:
    """CPU :class:`torch.Generator` objects seeded from :func:`seeds`."""
    return seeds().map(lambda seed: torch.Generator().manual_seed(seed))


def _distinct_batch(shape: tuple[int, ...], dtype: torch.dtype, seed: int, distinct: bool) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    batch = shape[0]
    if dtype.is_floating_point:
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        if distinct and batch > 0:
            # Sample b lives in [b / B, (b + 1) / B) on the first channel of every pixel: any two
            # samples differ at every position, even after rounding to bfloat16.
            base = torch.rand(shape[1:-3] + shape[-2:], generator=g, dtype=torch.float64)
            offsets = torch.arange(batch, dtype=torch.float64).reshape(batch, *([1] * (len(shape) - 1 - 1 - 2)), 1, 1)
            x.select(-3, 0).copy_((base + offsets) / batch)
        return x.to(dtype)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.int64)
    if distinct and batch > 0:
        base = torch.randint(0, 256, shape[1:-3] + shape[-2:], generator=g)
        step = max(256 // batch, 1)
        offsets = (torch.arange(batch) * step).reshape(batch, *([1] * (len(shape) - 1 - 1 - 2)), 1, 1)
        x.select(-3, 0).copy_((base + offsets) % 256)
    return x.to(dtype)


@st.composite
def image_batches(
    draw: st.DrawFn,
    *,
    dtypes: Sequence[torch.dtype] = IMAGE_DTYPES,
    kinds: Sequence[str] = KINDS,
    min_batch_size: int = 1,
    max_batch_size: int = 8,
    min_side: int = 1,
    max_side: int = 64,
    min_channels: int = 1,
    max_channels: int = 3,
    max_frames: int = 3,
    channels_last: bool | None = None,
    distinct_samples: bool = True,
) -> Tensor:
    """Batches of images or videos, with independent height and width (non-square included).

    Args:
        dtypes: dtypes to draw from.
        kinds: containers to draw from, a subset of :data:`KINDS`.
        min_batch_size: smallest batch (``0`` allowed).
        max_batch_size: largest batch.
        min_side: smallest height or width.
        max_side: largest height or width.
        min_channels: fewest channels.
        max_channels: most channels.
        max_frames: most frames of a video.
        channels_last: ``True`` for channels_last images (4-D only), ``False`` for contiguous,
            ``None`` to draw either.
        distinct_samples: make any two samples differ at every pixel (on the first channel), so a
            pasted pixel's source is never ambiguous. ``False`` gives plain random pixels.
    """
    _check_range("batch_size", min_batch_size, max_batch_size, 0)
    _check_range("side", min_side, max_side, 1)
    _check_range("channels", min_channels, max_channels, 1)
    if not dtypes:
        raise InvalidArgument("dtypes must not be empty; use dtypes=[torch.float32] for a fixed dtype.")
    unknown = set(kinds) - set(KINDS)
    if not kinds or unknown:
        raise InvalidArgument(f"kinds must be a non-empty subset of {KINDS}, but got {list(kinds)}.")
    kind = draw(st.sampled_from(list(kinds)))
    dtype = draw(st.sampled_from(list(dtypes)))
    batch = draw(st.integers(min_batch_size, max_batch_size))
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    channels = draw(st.integers(min_channels, max_channels))
    shape: tuple[int, ...] = (batch, channels, height, width)
    if kind == "video":
        shape = (batch, draw(st.integers(1, max(1, max_frames))), channels, height, width)
    x = _distinct_batch(shape, dtype, draw(seeds()), distinct_samples)
    use_cl = draw(st.booleans()) if channels_last is None else channels_last
    if use_cl and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if kind == "image":
        return tv_tensors.Image(x)
    if kind == "video":
        return tv_tensors.Video(x)
    return x


@st.composite
def labels(
    draw: st.DrawFn,
    *,
    batch_size: int,
    num_classes: int,
    soft: bool | None = None,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
) -> Tensor:
    """Labels for a batch: class indices ``(B,)`` (int64) or soft labels ``(B, K)``.

    Index labels are distinct when ``num_classes >= batch_size``; soft labels are random
    non-negative rows summing to 1, so every sample's label differs from the others'.

    Args:
        batch_size: ``B``.
        num_classes: ``K``.
        soft: ``True`` for soft labels, ``False`` for indices, ``None`` to draw either.
        dtypes: floating dtypes for soft labels.
    """
    if num_classes < 1:
        raise InvalidArgument(f"num_classes={num_classes} must be >= 1.")
    seed = draw(seeds())
    g = torch.Generator().manual_seed(seed)
    if draw(st.booleans()) if soft is None else soft:
        dtype = draw(st.sampled_from(list(dtypes)))
        raw = torch.rand(batch_size, num_classes, generator=g, dtype=torch.float64) + 1e-3
        return (raw / raw.sum(dim=1, keepdim=True)).to(dtype)
    if num_classes >= batch_size:
        return torch.randperm(num_classes, generator=g)[:batch_size]
    return torch.randint(num_classes, (batch_size,), generator=g)


@st.composite
def mix_inputs(
    draw: st.DrawFn,
    *,
    min_classes: int = 2,
    max_classes: int = 10,
    soft: bool | None = None,
    **image_kwargs: object,
) -> tuple[Tensor, Tensor, int]:
    """``(images, labels, num_classes)`` for a mixing transform.

    Keyword arguments other than those below go to :func:`image_batches`.

    Args:
        min_classes: fewest classes.
        max_classes: most classes.
        soft: as in :func:`labels`.
    """
    _check_range("classes", min_classes, max_classes, 1)
    images = draw(image_batches(**image_kwargs))  # type: ignore[arg-type]
    num_classes = draw(st.integers(min_classes, max_classes))
    y = draw(labels(batch_size=images.shape[0], num_classes=num_classes, soft=soft))
    return images, y, num_classes
