"""Argument checks shared by the core and the transforms: each says what was expected and what came."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _describe(x: object, *, dtype: bool = False) -> str:
    """What came, for an error message: a tensor's (dtype and) shape, else its type."""
    if isinstance(x, Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}" if dtype else f"shape {tuple(x.shape)}"
    return type(x).__name__


def _check_bool(name: str, value: object) -> bool:
    """A boolean option: ``True`` or ``False`` only (``"yes"``, ``1.5`` or ``None`` are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, but got {value!r} ({type(value).__name__}).")
    return value


def _check_concentration(name: str, value: object) -> float:
    """A Beta concentration (``alpha``): a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, but got {value!r}.")
    return float(value)


def _check_num_classes(num_classes: object) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be an int >= 1 or None, but got {num_classes!r}.")


def _check_label_smoothing(label_smoothing: object) -> float:
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0.0 <= label_smoothing < 1.0
    ):
        raise ValueError(f"label_smoothing must be in [0, 1), but got {label_smoothing!r}.")
    return float(label_smoothing)


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, but got {type(generator).__name__}.")
    if generator.device.type != "cpu":
        raise ValueError(
            "generator must be a CPU torch.Generator: the random parameters of a mix are a few numbers "
            "per sample, drawn on the CPU so that the device never waits on them; "
            f"got a generator on {generator.device}."
        )


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, but got {value!r}.")


def _check_partner(partner: Tensor | None, batch_size: int, device: torch.device) -> Tensor | None:
    if partner is None:
        return None
    if (
        not isinstance(partner, Tensor)
        or partner.shape != (batch_size,)
        or partner.dtype not in (torch.int64, torch.int32)
    ):
        got = (
            f"{partner.dtype} of shape {tuple(partner.shape)}"
            if isinstance(partner, Tensor)
            else type(partner).__name__
        )
        raise ValueError(f"partner must be an int64 tensor of shape ({batch_size},), but got {got}.")
    return partner.to(device, non_blocking=True)
