"""Mix inside a DataLoader's ``collate_fn``."""

from __future__ import annotations

import collections.abc
import hashlib
import types
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info

__all__ = ["MixCollate"]

# Not walked into: tensors, classes and Python modules hold no transforms (a module's attributes reach everything).
_LEAVES = (torch.Tensor, type, types.ModuleType)


def _generators(root: Any) -> list[torch.Generator]:
    """Every distinct :class:`torch.Generator` reachable from ``root``, in depth-first order of first sight.

    The walk follows instance attributes (``vars``), list and tuple items and dict values. That reaches the
    ``transforms`` lists of torchvision's containers, an ``nn.Module``'s children (in its ``_modules``
    dict) and the ``generator`` attribute of any object, at any depth. Each object is visited once, so
    cycles end and a generator shared by several transforms is listed once.
    """
    found: dict[int, torch.Generator] = {}
    visited: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Generator):
            found.setdefault(id(obj), obj)
            continue
        if id(obj) in visited or isinstance(obj, _LEAVES):
            continue
        visited.add(id(obj))
        if isinstance(obj, collections.abc.Mapping):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple)):
            children = list(obj)
        else:
            children = list(getattr(obj, "__dict__", {}).values())
        stack.extend(reversed(children))  # pop the first child first
    return list(found.values())


def _worker_seed(worker_seed: int, initial_seed: int, position: int) -> int:
    """A 64-bit seed from a worker's seed, a generator's initial seed and its position in the walk."""
    digest = hashlib.blake2b(f"{worker_seed},{initial_seed},{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class MixCollate:
    """A picklable ``collate_fn`` that collates a list of samples, then mixes the batch.

    Use it where a lambda such as ``lambda b: cutmix(*default_collate(b))`` would fail: with
    ``num_workers > 0`` under the ``spawn`` start method, and with ``persistent_workers=True``.
    Mixing then runs in the worker processes, on the CPU, overlapped with training.

    Every worker draws its own random boxes. With ``generator=None`` a transform uses torch's global
    generator, which the DataLoader seeds differently in every worker. Transforms with their own
    ``generator`` are reseeded in each worker, before its first batch:

    * *What*: every :class:`torch.Generator` reachable from ``transform`` through instance attributes,
      list and tuple items and dict values, at any depth. That covers the ``transforms`` lists of
      torchvision's containers (``v2.Compose``, ``v2.RandomApply``, ``v2.RandomChoice``,
      ``v2.RandomOrder``), the children of an ``nn.Module``, this package's transforms and any object
      with a ``generator`` attribute. Not reached: generators captured in closures (a ``lambda``),
      held in sets or ``__slots__``, or inside tensors, classes and modules.
    * *Once*: each distinct generator is reseeded once per worker process, even when several
      transforms share it; later batches of that worker continue its stream.
    * *How*: with a 64-bit hash of the worker's seed (``get_worker_info().seed``), the generator's
      ``initial_seed()`` and its position among the distinct generators in a depth-first walk (so
      generators seeded alike still draw apart).

    The worker's seed is the DataLoader's base seed plus the worker id, and the base seed is drawn
    for every new iterator. So workers draw different boxes; workers that are not persistent draw
    new boxes every epoch (persistent ones continue their streams); and a DataLoader given a seeded
    ``generator`` reproduces the run. In the main process (``num_workers=0``) nothing is reseeded.

    Under ``spawn`` the transform reaches the workers pickled: this package's transforms carry their
    generator's state, so transforms that shared one generator hold a copy each there (each reseeded
    once). A bare :class:`torch.Generator` held by other objects does not survive that pickling
    (torch ships its state through shared memory); keep such objects to ``fork``.

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
        self._seeded_for: int | None = None

    def _reseed_in_worker(self) -> None:
        info = get_worker_info()
        if info is None or self._seeded_for == info.seed:
            return
        for position, generator in enumerate(_generators(self.transform)):
            generator.manual_seed(_worker_seed(info.seed, generator.initial_seed(), position))
        self._seeded_for = info.seed

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
