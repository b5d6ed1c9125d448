"""Input structures: flatten tuples, lists and dicts to (path, leaf) pairs, find the labels, compare values."""

from __future__ import annotations

import collections.abc
import copy
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

__all__ = [
    "flatten",
    "get_labels",
    "is_plain",
    "skeleton",
    "snapshot",
    "structure_problem",
    "tensors_equal",
    "values_equal",
]


def flatten(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Tensor):
        return [(path, tree)]
    if isinstance(tree, collections.abc.Mapping):
        return [pair for key, value in tree.items() for pair in flatten(value, f"{path}[{key!r}]")]
    if isinstance(tree, (tuple, list)):
        return [pair for i, value in enumerate(tree) for pair in flatten(value, f"{path}[{i}]")]
    return [(path, tree)]


def skeleton(tree: Any) -> Any:
    """The containers of ``tree`` without its leaves: what an output's structure must equal."""
    if isinstance(tree, Tensor):
        return "leaf"
    if isinstance(tree, collections.abc.Mapping):
        return ("dict", {key: skeleton(value) for key, value in tree.items()})
    if isinstance(tree, (tuple, list)):
        return ("tuple" if isinstance(tree, tuple) else "list", [skeleton(value) for value in tree])
    return "leaf"


def structure_problem(expected: Any, got: Any, path: str = "output") -> str | None:
    if expected == got:
        return None
    if expected == "leaf" or got == "leaf" or expected[0] != got[0]:
        kind = {"leaf": "a value", "dict": "a dict", "tuple": "a tuple", "list": "a list"}
        return (
            f"{path} is {kind[got if got == 'leaf' else got[0]]}, expected "
            f"{kind[expected if expected == 'leaf' else expected[0]]} as in the input."
        )
    if expected[0] == "dict":
        if set(expected[1]) != set(got[1]):
            return f"{path} has the keys {sorted(map(repr, got[1]))}, expected {sorted(map(repr, expected[1]))}."
        for key in expected[1]:
            problem = structure_problem(expected[1][key], got[1][key], f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if len(expected[1]) != len(got[1]):
        return f"{path} has {len(got[1])} items, expected {len(expected[1])}."
    for i, (e, g) in enumerate(zip(expected[1], got[1], strict=True)):
        problem = structure_problem(e, g, f"{path}[{i}]")
        if problem:
            return problem
    return None


def is_plain(x: Any) -> bool:
    return isinstance(x, Tensor) and not isinstance(x, tv_tensors.TVTensor)


def _find_labels(inputs: Any) -> Any:
    """The labels where torchvision's ``v2.CutMix`` looks for them by default, or ``None``."""
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            return None
        inputs = inputs[1]
    if is_plain(inputs):
        return inputs
    if isinstance(inputs, collections.abc.Mapping):
        keys = [key for key in inputs if isinstance(key, str)]
        for candidates in ([k for k in keys if k.lower() == "labels"], [k for k in keys if "label" in k.lower()]):
            if candidates:
                return inputs[candidates[0]]
    return None


def snapshot(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().clone()
    try:
        return copy.deepcopy(x)
    except Exception:  # an object that cannot be copied is compared by identity only
        return x


def tensors_equal(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    a, b = a.as_subclass(Tensor), b.as_subclass(Tensor)
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and type(a) is type(b) and tensors_equal(a, b)
    try:
        return bool(a == b)
    except Exception:
        return False


def get_labels(tree: Any, labels_getter: Any) -> Any:
    if labels_getter is None:
        return None
    if isinstance(labels_getter, str) and labels_getter == "default":
        found = _find_labels(tree)
        return found if isinstance(found, Tensor) else None
    if callable(labels_getter):
        return labels_getter(tree)
    raise ValueError(f"labels_getter must be 'default', a callable or None, but got {labels_getter!r}.")
