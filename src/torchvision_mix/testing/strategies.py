"""Hypothesis strategies for property-testing mixing transforms.

Needs the ``test`` extra (``pip install "torchvision-mix[test]"``), which installs Hypothesis.
Tensors are built from a drawn integer seed through a :class:`torch.Generator`, so examples
shrink and replay without touching torch's global random state.

What a test varies is given as strategies, as Hypothesis's own strategies take them: e.g.
``image_batches(dtypes=st.sampled_from([torch.uint8]), batch_sizes=st.integers(1, 5))`` and
``mix_inputs(images=image_batches(...), structure=st.sampled_from(["dict", "dict+mask"]))``.
What depends on another drawn value (labels on the batch size, masks on the image size) is
given as a function returning a strategy, as ``xarray.testing.strategies`` does.

Example:
    >>> from hypothesis import given
    >>> from hypothesis import strategies as st
    >>> from torchvision_mix.testing import strategies as mst
    >>> @given(mst.mix_inputs(images=mst.image_batches(batch_sizes=st.integers(1, 4), heights=st.integers(1, 16))))
    ... def test_shapes(inputs):
    ...     assert inputs.images.shape[0] == inputs.labels.shape[0]
    >>> test_shapes()
    >>> @given(mst.mix_inputs(images=mst.image_batches(batch_sizes=st.integers(1, 3), heights=st.just(8)),
    ...                       structure=st.sampled_from(["dict+mask", "tuple+dict"])))
    ... def test_structures(inputs):
    ...     sample = inputs.args[0]
    ...     assert inputs.images.shape[-2] == 8
    ...     assert isinstance(sample, dict) if inputs.structure == "dict+mask" else isinstance(sample[1], dict)
    >>> test_structures()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "torchvision_mix.testing.strategies needs Hypothesis, which comes with the test extra: "
        'pip install "torchvision-mix[test]" (or pip install hypothesis).'
    ) from error
from torch import Tensor
from torchvision import tv_tensors

from ._cases import MixInputs

__all__ = [
    "IMAGE_DTYPES",
    "KINDS",
    "STRUCTURES",
    "extra_values",
    "generators",
    "image_batches",
    "labels",
    "mix_inputs",
    "seeds",
    "segmentation_masks",
]

T = TypeVar("T")

#: The dtypes torchvision images come in.
IMAGE_DTYPES: tuple[torch.dtype, ...] = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Batch containers: ``tv_tensors.Image`` (B, C, H, W), ``tv_tensors.Video`` (B, T, C, H, W), plain (B, C, H, W).
KINDS: tuple[str, ...] = ("image", "video", "tensor")
#: How :func:`mix_inputs` passes a batch to a transform (``x`` the images, ``y`` the labels, ``m``
#: a segmentation mask, ``**extras`` pass-through entries):
#:
#: * ``"args"``: two arguments, ``transform(x, y)``;
#: * ``"tuple"``: ``transform((x, y))``; ``"list"``: ``transform([x, y])`` (what a DataLoader yields);
#: * ``"dict"``: ``transform({"image": x, "labels": y, **extras})``;
#: * ``"dict+mask"``: ``transform({"image": x, "mask": m, "labels": y, **extras})``;
#: * ``"tuple+dict"``: ``transform((x, {"labels": y, **extras}))`` (a detection-style target);
#: * ``"segmentation"``: ``transform({"image": x, "mask": m, **extras})``, no labels.
STRUCTURES: tuple[str, ...] = ("args", "tuple", "list", "dict", "dict+mask", "tuple+dict", "segmentation")
_LABELLED = tuple(s for s in STRUCTURES if s != "segmentation")


def _ints(plural: str, strategy: st.SearchStrategy[int] | None, default: tuple[int, int]) -> st.SearchStrategy[int]:
    """``strategy``, or integers in ``default`` (inclusive) when it is ``None``."""
    if strategy is None:
        return st.integers(*default)
    if not isinstance(strategy, st.SearchStrategy):
        raise InvalidArgument(f"{plural} must be a strategy of ints, e.g. st.integers(1, 5), but got {strategy!r}.")
    return strategy


def _draw_int(draw: st.DrawFn, strategy: st.SearchStrategy[int], plural: str, floor: int) -> int:
    value = draw(strategy)
    if isinstance(value, bool) or not isinstance(value, int) or value < floor:
        raise InvalidArgument(f"{plural} drew {value!r}, but it must draw ints >= {floor}.")
    return value


def _choices(name: str, value: Sequence[T] | st.SearchStrategy[T], example: str) -> st.SearchStrategy[T]:
    """A strategy as given, or a non-empty sequence drawn from uniformly."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise InvalidArgument(f"{name} must not be empty; use {name}={example} for a fixed {name.rstrip('s')}.")
    return st.sampled_from(list(value))


def _bools(name: str, value: bool | st.SearchStrategy[bool] | None) -> st.SearchStrategy[bool]:
    if isinstance(value, st.SearchStrategy):
        return value
    if value is None:
        return st.booleans()
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True, False, None (draw either) or a strategy, but got {value!r}.")
    return st.just(value)


def seeds() -> st.SearchStrategy[int]:
    """Seeds for :class:`torch.Generator` (integers in ``[0, 2**32)``)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def generators() -> st.SearchStrategy[torch.Generator]:
    """CPU :class:`torch.Generator` objects seeded from :func:`seeds`."""
    return seeds().map(lambda seed: torch.Generator().manual_seed(seed))


def _distinct_batch(shape: tuple[int, ...], dtype: torch.dtype, seed: int, distinct: bool) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    batch = shape[0]
    frame = (batch, *([1] * (len(shape) - 1 - 1 - 2)), 1, 1)  # broadcast over frames, H, W
    if dtype.is_floating_point:
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        if distinct and batch > 0:
            # Sample b lives in [b / B, (b + 1) / B) on the first channel of every pixel: any two
            # samples differ at every position by at least 1 / B, even after rounding to bfloat16.
            base = torch.rand(shape[1:-3] + shape[-2:], generator=g, dtype=torch.float64)
            offsets = torch.arange(batch, dtype=torch.float64).reshape(frame)
            x.select(-3, 0).copy_((base + offsets) / batch)
        return x.to(dtype)
    levels = min(256, torch.iinfo(dtype).max + 1)  # 0..255 (0..127 for int8)
    x = torch.randint(0, levels, shape, generator=g, dtype=torch.int64)
    if distinct and batch > 0:
        base = torch.randint(0, levels, shape[1:-3] + shape[-2:], generator=g)
        step = max(levels // batch, 1)
        offsets = (torch.arange(batch) * step).reshape(frame)
        x.select(-3, 0).copy_((base + offsets) % levels)
    return x.to(dtype)


@st.composite
def image_batches(
    draw: st.DrawFn,
    *,
    dtypes: Sequence[torch.dtype] | st.SearchStrategy[torch.dtype] = IMAGE_DTYPES,
    kinds: Sequence[str] | st.SearchStrategy[str] = KINDS,
    batch_sizes: st.SearchStrategy[int] | None = None,
    heights: st.SearchStrategy[int] | None = None,
    widths: st.SearchStrategy[int] | None = None,
    channels: st.SearchStrategy[int] | None = None,
    frames: st.SearchStrategy[int] | None = None,
    channels_last: bool | st.SearchStrategy[bool] | None = None,
    distinct_samples: bool = True,
) -> Tensor:
    """Batches of images or videos, with independent height and width (non-square included).

    Args:
        dtypes: a strategy of dtypes (any real dtype but bool), or a sequence to draw from.
            Default: :data:`IMAGE_DTYPES`.
        kinds: a strategy of containers, or a sequence to draw from, among :data:`KINDS`.
        batch_sizes: a strategy of batch sizes (``0`` allowed). Default: 1 to 8.
        heights: a strategy of heights (>= 1). Default: 1 to 64.
        widths: a strategy of widths (>= 1). Default: 1 to 64.
        channels: a strategy of channel counts (>= 1). Default: 1 to 3.
        frames: a strategy of video lengths (>= 1). Default: 1 to 3.
        channels_last: ``True`` for channels_last images (4-D only), ``False`` for contiguous,
            ``None`` to draw either, or a strategy of bools.
        distinct_samples: make any two samples differ at every pixel (on the first channel), so a
            pasted pixel's source is never ambiguous. ``False`` gives plain random pixels.
    """
    batch_st = _ints("batch_sizes", batch_sizes, (1, 8))
    height_st = _ints("heights", heights, (1, 64))
    width_st = _ints("widths", widths, (1, 64))
    channel_st = _ints("channels", channels, (1, 3))
    frame_st = _ints("frames", frames, (1, 3))
    dtype_st = _choices("dtypes", dtypes, "[torch.float32]")
    if not isinstance(kinds, st.SearchStrategy) and (not kinds or set(kinds) - set(KINDS)):
        raise InvalidArgument(f"kinds must be a non-empty subset of {KINDS}, but got {list(kinds)}.")
    kind_st = _choices("kinds", kinds, '["image"]')
    cl_st = _bools("channels_last", channels_last)

    kind = draw(kind_st)
    if kind not in KINDS:
        raise InvalidArgument(f"kinds drew {kind!r}, but it must draw one of {KINDS}.")
    dtype = draw(dtype_st)
    if not isinstance(dtype, torch.dtype) or dtype == torch.bool or dtype.is_complex:
        raise InvalidArgument(f"dtypes drew {dtype!r}, but it must draw real torch dtypes other than bool.")
    batch = _draw_int(draw, batch_st, "batch_sizes", 0)
    height = _draw_int(draw, height_st, "heights", 1)
    width = _draw_int(draw, width_st, "widths", 1)
    n_channels = _draw_int(draw, channel_st, "channels", 1)
    shape: tuple[int, ...] = (batch, n_channels, height, width)
    if kind == "video":
        shape = (batch, _draw_int(draw, frame_st, "frames", 1), n_channels, height, width)
    x = _distinct_batch(shape, dtype, draw(seeds()), distinct_samples)
    if draw(cl_st) and x.ndim == 4:
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
    soft: bool | st.SearchStrategy[bool] | None = None,
    dtypes: Sequence[torch.dtype] | st.SearchStrategy[torch.dtype] = (torch.float32, torch.float64),
) -> Tensor:
    """Labels for a batch: class indices ``(B,)`` (int64) or soft labels ``(B, K)``.

    Index labels are distinct when ``num_classes >= batch_size``; soft labels are random
    non-negative rows summing to 1, so every sample's label differs from the others'.

    Args:
        batch_size: ``B``.
        num_classes: ``K``.
        soft: ``True`` for soft labels, ``False`` for indices, ``None`` to draw either, or a
            strategy of bools.
        dtypes: floating dtypes for soft labels (a strategy, or a sequence to draw from).
    """
    if num_classes < 1:
        raise InvalidArgument(f"num_classes={num_classes} must be >= 1.")
    soft_st = _bools("soft", soft)
    dtype_st = _choices("dtypes", dtypes, "[torch.float32]")
    seed = draw(seeds())
    g = torch.Generator().manual_seed(seed)
    if draw(soft_st):
        dtype = draw(dtype_st)
        raw = torch.rand(batch_size, num_classes, generator=g, dtype=torch.float64) + 1e-3
        return (raw / raw.sum(dim=1, keepdim=True)).to(dtype)
    if num_classes >= batch_size:
        return torch.randperm(num_classes, generator=g)[:batch_size]
    return torch.randint(num_classes, (batch_size,), generator=g)


@st.composite
def segmentation_masks(
    draw: st.DrawFn,
    *,
    batch_size: int,
    height: int,
    width: int,
    dtypes: Sequence[torch.dtype] | st.SearchStrategy[torch.dtype] = (torch.uint8, torch.int64),
    num_classes: st.SearchStrategy[int] | None = None,
    channel_dim: bool | st.SearchStrategy[bool] | None = None,
) -> Tensor:
    """Segmentation masks: a ``tv_tensors.Mask`` of class ids, ``(B, H, W)`` or ``(B, 1, H, W)``.

    Class ids are random, so a mask alone rarely tells which sample a pixel came from: the
    images do, and :func:`~torchvision_mix.testing.check_mix_transform` checks that the masks
    follow them.

    Args:
        batch_size: ``B``.
        height: ``H``.
        width: ``W``.
        dtypes: integer dtypes of the ids (a strategy, or a sequence to draw from).
        num_classes: a strategy of the number of classes (ids in ``[0, n)``). Default: 1 to 10.
        channel_dim: ``True`` for ``(B, 1, H, W)``, ``False`` for ``(B, H, W)``, ``None`` to draw
            either, or a strategy of bools.
    """
    dtype = draw(_choices("dtypes", dtypes, "[torch.uint8]"))
    n = _draw_int(draw, num_classes if num_classes is not None else st.integers(1, 10), "num_classes", 1)
    ids = torch.randint(0, n, (batch_size, height, width), generator=torch.Generator().manual_seed(draw(seeds())))
    if draw(_bools("channel_dim", channel_dim)):
        ids = ids[:, None]
    return tv_tensors.Mask(ids.to(dtype))


def extra_values(batch_size: int, height: int = 1, width: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    """Pass-through entries a sample dict may hold besides images, masks and labels.

    Some of: ``"index"`` (an int64 tensor ``(B,)``), ``"path"`` (a list of ``B`` strings) and
    ``"meta"`` (a dict of plain values). A mix must return them unchanged.
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "index": st.integers(0, 10**6).map(lambda start: torch.arange(start, start + batch_size)),
            "path": st.just([f"images/{i:05d}.png" for i in range(batch_size)]),
            "meta": st.fixed_dictionaries({"epoch": st.integers(0, 100), "split": st.sampled_from(["train", "val"])}),
        },
    )


def _build(structure: str, x: Tensor, y: Tensor | None, m: Tensor | None, extras: dict[str, Any]) -> tuple[Any, ...]:
    if structure == "args":
        return (x, y)
    if structure == "tuple":
        return ((x, y),)
    if structure == "list":
        return ([x, y],)
    if structure == "dict":
        return ({"image": x, "labels": y, **extras},)
    if structure == "dict+mask":
        return ({"image": x, "mask": m, "labels": y, **extras},)
    if structure == "tuple+dict":
        return ((x, {"labels": y, **extras}),)
    return ({"image": x, "mask": m, **extras},)


@st.composite
def mix_inputs(
    draw: st.DrawFn,
    *,
    images: st.SearchStrategy[Tensor] | None = None,
    num_classes: st.SearchStrategy[int] | None = None,
    labels: Callable[..., st.SearchStrategy[Tensor]] | None = None,
    structure: st.SearchStrategy[str] | None = None,
    masks: Callable[..., st.SearchStrategy[Tensor]] | None = None,
    extras: Callable[..., st.SearchStrategy[dict[str, Any]]] | None = None,
) -> MixInputs:
    """The input of one call of a mixing transform, in one of the :data:`STRUCTURES`.

    Returns a :class:`~torchvision_mix.testing.MixInputs`: call ``transform(*inputs.args)`` or
    give it to :func:`~torchvision_mix.testing.check_mix_transform`.

    Args:
        images: a strategy of image batches. Default: :func:`image_batches`.
        num_classes: a strategy of ``K`` (>= 1). Default: 2 to 10.
        labels: a function ``(*, batch_size, num_classes) -> strategy`` of labels (called with
            keywords, so ``functools.partial(labels, soft=True)`` fits). Default: :func:`labels`.
        structure: a strategy of names from :data:`STRUCTURES`. Default: every structure with
            labels (all but ``"segmentation"``).
        masks: a function ``(*, batch_size, height, width) -> strategy`` of segmentation masks
            for the structures that hold one. Default: :func:`segmentation_masks`.
        extras: a function ``(*, batch_size, height, width) -> strategy`` of a dict of pass-through
            entries, added to the structure's dict (``"dict"``, ``"dict+mask"``, ``"tuple+dict"``,
            ``"segmentation"``; the others hold none). Default: :func:`extra_values`.
    """
    class_st = _ints("num_classes", num_classes, (2, 10))
    image_st = images if images is not None else image_batches()
    label_fn = labels if labels is not None else _labels
    structure_st = structure if structure is not None else st.sampled_from(_LABELLED)
    mask_fn = masks if masks is not None else segmentation_masks
    extra_fn = extras if extras is not None else extra_values

    x = draw(image_st)
    if not isinstance(x, Tensor) or x.ndim < 3:
        raise InvalidArgument(f"images drew {type(x).__name__} {getattr(x, 'shape', '')}, not a batch (B, ..., H, W).")
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    k = _draw_int(draw, class_st, "num_classes", 1)
    name = draw(structure_st)
    if name not in STRUCTURES:
        raise InvalidArgument(f"structure drew {name!r}, but it must draw one of {STRUCTURES}.")
    y = None if name == "segmentation" else draw(label_fn(batch_size=batch, num_classes=k))
    m = (
        draw(mask_fn(batch_size=batch, height=height, width=width))
        if "mask" in name or name == "segmentation"
        else None
    )
    extra: dict[str, Any] = {}
    if name in ("dict", "dict+mask", "tuple+dict", "segmentation"):
        extra = draw(extra_fn(batch_size=batch, height=height, width=width))
        clash = set(extra) & {"image", "mask", "labels"}
        if clash:
            raise InvalidArgument(f"extras drew the keys {sorted(clash)}, which the structure uses.")
    return MixInputs(_build(name, x, y, m, extra), x, y, k, name, m, extra)


_labels = labels
