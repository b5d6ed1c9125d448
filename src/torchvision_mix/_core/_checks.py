"""Every argument check of the package, shared by the core and the transforms.

Each check says what was expected and what came. ``_is_int``/``_is_number`` (Python values) and
``_is_real``/``_is_integer`` (tensor dtypes) are the one place where "``True`` is not a number"
and "a bool or complex tensor holds no real values" are decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _describe(x: object, *, dtype: bool = False) -> str:
    """What came, for an error message: a tensor's (dtype and) shape, else its type."""
    if isinstance(x, Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}" if dtype else f"shape {tuple(x.shape)}"
    return type(x).__name__


def _is_int(value: object) -> bool:
    """A Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A Python int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_real(x: Tensor) -> bool:
    """A tensor of real numbers: neither complex nor bool."""
    return not (x.is_complex() or x.dtype == torch.bool)


def _is_integer(x: Tensor) -> bool:
    """A tensor of integers: neither float, complex nor bool."""
    return _is_real(x) and not x.is_floating_point()


def _reads_values(x: Tensor) -> bool:
    """Whether a check may read ``x``'s values: a non-empty CPU tensor outside torch.compile (no sync)."""
    return x.device.type == "cpu" and x.numel() > 0 and not torch.compiler.is_compiling()


def _check_bool(name: str, value: object) -> bool:
    """A boolean option: ``True`` or ``False`` only (``"yes"``, ``1.5`` or ``None`` are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, but got {value!r} ({type(value).__name__}).")
    return value


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    """An int (not a bool) >= ``minimum``."""
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        expected = "a non-negative int" if minimum == 0 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {expected}, but got {value!r}.")
    return int(value)  # type: ignore[call-overload]


def _check_positive(name: str, value: object) -> float:
    """A finite number > 0 (a Beta concentration, a spread, a decay power)."""
    if not _is_number(value) or not value > 0 or math.isinf(value):  # type: ignore[operator,arg-type]
        raise ValueError(f"{name} must be a finite number > 0, but got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def _check_probability(name: str, value: object, *, optional: bool = False) -> float | None:
    """A probability in [0, 1] (or ``None`` when ``optional``)."""
    if optional and value is None:
        return None
    if not _is_number(value) or not 0.0 <= value <= 1.0:  # type: ignore[operator]
        expected = "a probability in [0, 1] or None" if optional else "a probability in [0, 1]"
        raise ValueError(f"{name} must be {expected}, but got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def _check_p(value: object) -> float:
    """The probability of mixing, ``p``."""
    p = _check_probability("p", value)
    assert p is not None
    return p


def _check_choice_probabilities(p: object, n: int) -> list[float]:
    """One weight >= 0 per choice, finite, not all zero (normalised when drawn)."""
    if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != n:
        raise ValueError(f"p must hold one probability per mix ({n}), but got {p!r}.")
    if not all(_is_number(v) and v >= 0 and not math.isinf(v) for v in p):
        raise ValueError(f"p must hold finite probabilities >= 0, but got {p!r}.")
    values = [float(v) for v in p]
    if sum(values) <= 0:
        raise ValueError(f"p must not sum to 0: at least one mix must be possible, but got {p!r}.")
    return values


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, but got {value!r}.")
    return str(value)


def _check_size_pair(name: str, value: object) -> tuple[int, int]:
    """A size ``(h, w)`` of ints >= 1, or one int for a square."""
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints >= 1, but got {value!r}.")
    return int(pair[0]), int(pair[1])


def _check_fits(what: str, size: tuple[int, int], height: int, width: int) -> None:
    """``size`` fits in an image of ``height x width``."""
    if size[0] > height or size[1] > width:
        raise ValueError(f"The {what} ({size[0]}x{size[1]}) is larger than the image ({height}x{width}).")


def _check_grid_range(grid_size: object) -> tuple[int, int]:
    """A grid size: an int ``g >= 1`` or an inclusive range ``(low, high)`` with ``1 <= low <= high``."""
    pair = (grid_size, grid_size) if _is_int(grid_size) else grid_size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(_is_int(v) for v in pair)
        or not 1 <= pair[0] <= pair[1]
    ):
        raise ValueError(
            f"grid_size must be an int >= 1 or an inclusive range (low, high) with 1 <= low <= high, "
            f"but got {grid_size!r}."
        )
    return int(pair[0]), int(pair[1])


def _check_num_classes(num_classes: object) -> None:
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):  # type: ignore[operator]
        raise ValueError(f"num_classes must be an int >= 1 or None, but got {num_classes!r}.")


def _check_label_smoothing(label_smoothing: object) -> float:
    if not _is_number(label_smoothing) or not 0.0 <= label_smoothing < 1.0:  # type: ignore[operator]
        raise ValueError(f"label_smoothing must be in [0, 1), but got {label_smoothing!r}.")
    return float(label_smoothing)  # type: ignore[arg-type]


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
    _check_int("height", height)
    _check_int("width", width)


def _check_partner(partner: Tensor | None, batch_size: int, device: torch.device) -> Tensor | None:
    if partner is None:
        return None
    if (
        not isinstance(partner, Tensor)
        or partner.shape != (batch_size,)
        or partner.dtype not in (torch.int64, torch.int32)
    ):
        got = _describe(partner, dtype=True)
        raise ValueError(f"partner must be an int64 tensor of shape ({batch_size},), but got {got}.")
    return partner.to(device, non_blocking=True)


def _check_unit_range(name: str, values: Tensor) -> None:
    """Values in [0, 1], read on CPU tensors only (reading a device tensor would wait for it)."""
    if _reads_values(values):
        low, high = (float(v) for v in torch.aminmax(values if values.is_floating_point() else values.double()))
        if not 0.0 <= low <= high <= 1.0:  # NaN fails too
            raise ValueError(f"{name} must be in [0, 1], but got values in [{low}, {high}].")


def _check_weights(weights: Tensor, batch: int, device: torch.device) -> Tensor:
    """A blend's partner weights: float ``(batch,)`` in [0, 1], moved to ``device``."""
    if not isinstance(weights, Tensor) or weights.shape != (batch,) or not weights.is_floating_point():
        got = _describe(weights, dtype=True)
        raise ValueError(f"weights must be a float tensor of shape ({batch},), but got {got}.")
    _check_unit_range("weights", weights)
    return weights.to(device, non_blocking=True)


def _check_labels(labels: Tensor, *, num_classes: int | None, batch_size: int | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``labels`` are valid index or soft labels.

    Index labels: a tensor ``(B,)`` of any integer dtype with values in ``[0, num_classes)``; the
    range is checked on CPU tensors only, since reading a device tensor would force a host
    synchronisation (as :func:`torch.nn.functional.one_hot` does, an out-of-range index on a GPU
    triggers a device-side error later instead). Soft labels: tensor ``(B, K)``, ``K`` equal to
    ``num_classes`` when given.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"The labels must be a tensor, but got {type(labels).__name__} instead.")
    if labels.ndim not in (1, 2):
        raise ValueError(
            "The labels must be class indices of shape (batch_size,) or soft labels of shape "
            f"(batch_size, num_classes), but got a tensor of shape {tuple(labels.shape)}."
        )
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(
            "The batch size of the labels does not match the batch size of the images: "
            f"{labels.shape[0]} != {batch_size}."
        )
    if labels.is_complex():
        raise TypeError(f"The labels must be real, but got dtype {labels.dtype}.")
    _check_num_classes(num_classes)
    if labels.ndim == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"Soft labels must have num_classes={num_classes} columns, but got shape {tuple(labels.shape)}. "
                "Leave num_classes=None to take the width from the labels."
            )
        return
    if not _is_integer(labels):
        raise TypeError(
            "Index labels of shape (batch_size,) must be an integer tensor (any integer dtype: int64, int32, "
            f"uint8, ...), but got dtype {labels.dtype}."
        )
    if num_classes is None:
        raise ValueError("num_classes must be passed when the labels are class indices of shape (batch_size,).")
    if _reads_values(labels):
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"Class indices must be in [0, {num_classes}), but got {bad}.")
