"""Mix inside a DataLoader's ``collate_fn``."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info

__all__ = ["MixCollate"]


class MixCollate:
    """A picklable ``collate_fn`` that collates a list of samples, then mixes the batch.

    Use it where a lambda such as ``lambda b: cutmix(*default_collate(b))`` would fail: with
    ``num_workers > 0`` under the ``spawn`` start method, and with ``persistent_workers=True``.
    Mixing then runs in the worker processes, on the CPU, overlapped with training.

    Every worker draws its own random boxes. With ``generator=None`` the transform uses torch's
    global generator, which the DataLoader seeds differently in every worker. A transform with its
    own ``generator`` is reseeded once in each worker from the worker's seed (itself derived from
    the DataLoader's base seed, so a DataLoader given a seeded ``generator`` reproduces the run),
    so no two workers repeat one stream.

    Args:
        transform: the mix, called on the collated batch (e.g. :class:`~torchvision_mix.CutMix`).
        collate_fn: turns the list of samples into a batch; :func:`torch.utils.data.default_collate`
            by default. Its result must be a tensor, a tuple/list or a dict.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from torchvision_mix import CutMix, MixCollate
        >>> data = TensorDataset(torch.rand(16, 3, 8, 8), torch.arange(16) % 4)
        >>> loader = DataLoader(data, batch_size=8, shuffle=True, collate_fn=MixCollate(CutMix(num_classes=4)))
        >>> images, labels = next(iter(loader))
        >>> images.shape, labels.shape
        (torch.Size([8, 3, 8, 8]), torch.Size([8, 4]))
    """

    def __init__(self, transform: Callable[..., Any], collate_fn: Callable[[list[Any]], Any] = default_collate) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, but got {type(transform).__name__}.")
        if not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable, but got {type(collate_fn).__name__}.")
        self.transform = transform
        self.collate_fn = collate_fn
        self._seeded_for: tuple[int, int] | None = None

    def _reseed_in_worker(self) -> None:
        info = get_worker_info()
        generator = getattr(self.transform, "generator", None)
        if info is None or not isinstance(generator, torch.Generator):
            return
        key = (info.id, info.seed)
        if self._seeded_for != key:
            generator.manual_seed((generator.initial_seed() * 1_000_003 + info.seed) % (2**63))
            self._seeded_for = key

    def __call__(self, samples: list[Any]) -> Any:
        batch = self.collate_fn(samples)
        if not isinstance(batch, (torch.Tensor, collections.abc.Sequence, collections.abc.Mapping)) or isinstance(
            batch, (str, bytes)
        ):
            name = getattr(self.collate_fn, "__name__", type(self.collate_fn).__name__)
            raise TypeError(
                f"MixCollate: collate_fn {name} must return a batch (a tensor, a tuple/list such as "
                f"(images, labels), or a dict), but returned a {type(batch).__name__}."
            )
        self._reseed_in_worker()
        return self.transform(batch)

    def __repr__(self) -> str:
        name = getattr(self.collate_fn, "__name__", repr(self.collate_fn))
        return f"MixCollate({self.transform!r}, collate_fn={name})"
