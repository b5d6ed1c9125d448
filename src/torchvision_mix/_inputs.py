"""Where a mix finds its inputs: the batch leaves, the labels and side inputs, as torchvision does.

A transform's input is any structure torch's pytree flattens (tuples, lists, dicts). The leaves
to mix are the ``tv_tensors.Image``/``Video``/``Mask`` leaves, else the first plain tensor that is
neither the labels nor a side input; the labels come from ``labels_getter``.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torchvision import tv_tensors

_LabelsGetter = Callable[[Any], Any]


class UnsupportedInputError(TypeError, ValueError):
    """An input a mix cannot take (a PIL image, boxes, keypoints, a mask to blend).

    Both a :class:`TypeError` and a :class:`ValueError`: torchvision's ``v2.CutMix`` raises
    ``ValueError`` for these, so code written against it catches ours too.
    """


def _is_pure_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and not isinstance(x, tv_tensors.TVTensor)


def _default_labels_getter(inputs: Any) -> Any:
    """Find the labels as torchvision's ``v2.CutMix`` does.

    ``(images, labels)`` → ``labels``; ``(images, {"labels": ...})`` or ``{"labels": ...}`` →
    the value of the key equal to ``labels`` (case-insensitive), else of the first key
    containing ``label``.
    """
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            raise ValueError(
                "With the default labels_getter the input must be (images, labels), [images, labels] or a dict "
                f"holding a 'labels' key, but got a {type(inputs).__name__} of length {len(inputs)}."
            )
        inputs = inputs[1]
    if isinstance(inputs, Tensor) and not isinstance(inputs, tv_tensors.TVTensor):
        return inputs
    if isinstance(inputs, collections.abc.Mapping):
        keys = [k for k in inputs if isinstance(k, str)]
        for candidates in ([k for k in keys if k.lower() == "labels"], [k for k in keys if "label" in k.lower()]):
            if candidates:
                return inputs[candidates[0]]
        raise ValueError(
            f"Could not find the labels among the keys {list(inputs)}: expected a key containing 'label'. "
            "Pass labels_getter=callable to say where they are, or labels_getter=None if there are none."
        )
    raise ValueError(
        "With the default labels_getter the input must be (images, labels) or a dict holding a 'labels' key, "
        f"but the second item is a {type(inputs).__name__}. Pass labels_getter=callable to say where the labels are."
    )


def _parse_labels_getter(labels_getter: Any) -> _LabelsGetter | None:
    if isinstance(labels_getter, str) and labels_getter == "default":
        return _default_labels_getter
    if labels_getter is None or callable(labels_getter):
        return labels_getter
    raise ValueError(f"labels_getter must be 'default', a callable or None, but got {labels_getter!r}.")


def _main_batch(leaves: list[Any]) -> Tensor:
    """The leaf that drives the mix: the first image/video (or plain tensor), else the first mask."""
    return next((x for x in leaves if not isinstance(x, tv_tensors.Mask)), leaves[0])
